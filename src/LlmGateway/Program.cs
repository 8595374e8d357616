return GatewayCommandLine.Run(args, static args =>
{
    var builder = WebApplication.CreateBuilder(args);
    builder.AddLlmGateway();

    var app = builder.Build();
    app.MapLlmGateway();
    app.Run();
});
