# LlmGateway image: the gateway (default entrypoint) and the bundled MockLlm provider, published side by side
# into /app so docker-compose runs both from one image:
#   gateway: dotnet LlmGateway.dll                       (http://0.0.0.0:8080, config /app/config/gateway.json)
#   mockllm: dotnet LlmGateway.MockLlm.dll --urls http://0.0.0.0:9090

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src

# Restore first, from the project files alone, so source edits reuse the cached restore layer. YARP comes in
# through a PackageDownload + HintPath under $(NuGetPackageRoot) (Directory.Build.targets), so the restore must
# see Directory.Build.targets as well as the props and central package versions.
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props .editorconfig ./
COPY src/LlmGateway/LlmGateway.csproj src/LlmGateway/
COPY src/LlmGateway.MockLlm/LlmGateway.MockLlm.csproj src/LlmGateway.MockLlm/
RUN dotnet restore src/LlmGateway/LlmGateway.csproj

COPY src/ src/
# The MockLlm is published after the gateway so its own deps.json/runtimeconfig.json are the ones in /app.
RUN dotnet publish src/LlmGateway/LlmGateway.csproj -c Release --no-restore -o /app \
 && dotnet publish src/LlmGateway.MockLlm/LlmGateway.MockLlm.csproj -c Release --no-restore -o /app

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
WORKDIR /app
COPY --from=build /app ./
COPY config/ ./config/

# ASPNETCORE_URLS replaces the image's ASPNETCORE_HTTP_PORTS; the gateway's own default (127.0.0.1) would be
# unreachable from other containers.
ENV ASPNETCORE_URLS=http://0.0.0.0:8080 \
    ASPNETCORE_HTTP_PORTS= \
    LLMGATEWAY_CONFIG=/app/config/gateway.json \
    DOTNET_NOLOGO=1
EXPOSE 8080

# The aspnet image's unprivileged 'app' user (UID in APP_UID).
USER $APP_UID
ENTRYPOINT ["dotnet", "LlmGateway.dll"]
