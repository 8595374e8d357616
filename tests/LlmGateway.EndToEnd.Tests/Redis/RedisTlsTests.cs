using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Redis over TLS: a real redis-server with a TLS port whose certificate a private CA of the test issued. The gateway
/// connects with StackExchange.Redis's <c>ssl=true,sslHost=</c> and trusts that CA through Gateway:Store:TlsCaFile;
/// without it, the certificate is refused and no call is admitted unaccounted.
/// </summary>
[RequiresRedisServer]
public sealed class RedisTlsTests : IClassFixture<RedisTlsTests.TlsRedis>, IAsyncLifetime
{
    private readonly TlsRedis _redis;
    private MockLlmServer _mock = null!;

    public RedisTlsTests(TlsRedis redis) => _redis = redis;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [RedisFact]
    public async Task TlsRedis_WithItsCaTrusted_EnforcesLimitsThroughRedis()
    {
        await using var gateway = await GatewayProcess.StartAsync(Config(trustCa: true));

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"tls {i}"), "sk-rpm"));
            statuses.Add(response.StatusCode);
        }

        // rpm-user has Rpm 5: the sixth is refused, so the window lives in the TLS Redis.
        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.OK, 5), HttpStatusCode.TooManyRequests], statuses);
        Assert.NotEqual(":0", _redis.Server.TryCommand("DBSIZE"));
    }

    [RedisFact]
    public async Task TlsRedis_WithoutItsCaTrusted_StopsStartUp_SayingWhichSettingTrustsIt()
    {
        var (exitCode, output) = await GatewayProcess.RunToExitAsync(Config(trustCa: false), "--config", "{config}", "--urls", "http://127.0.0.1:0");

        // A certificate the gateway does not trust never heals by waiting: start-up stops with the setting to use,
        // rather than starting and refusing every call with store_unavailable.
        Assert.Equal(2, exitCode);
        Assert.Contains("config error: Gateway:Redis: Redis's TLS certificate was not accepted", output);
        Assert.Contains("Gateway:Store:TlsCaFile", output);
        Assert.DoesNotContain("   at ", output);
    }

    [RedisFact]
    public async Task TlsCaFile_ThatDoesNotExist_IsAConfigErrorNamingIt()
    {
        var config = Config(trustCa: true).Replace(_redis.CaFile, "/nonexistent/ca.pem", StringComparison.Ordinal);

        var (exitCode, output) = await GatewayProcess.RunToExitAsync(config, "--config", "{config}", "--urls", "http://127.0.0.1:0");

        Assert.Equal(2, exitCode);
        Assert.Contains("Gateway:Store:TlsCaFile: the file '/nonexistent/ca.pem' does not exist", output);
    }

    private string Config(bool trustCa)
    {
        var config = TestConfigs.Budgets(_mock.BaseUrl, $"127.0.0.1:{_redis.TlsPort},ssl=true,sslHost=localhost", storeTimeout: "00:00:02");
        return trustCa
            ? config.Replace("\"Store\": {", $"\"Store\": {{ \"TlsCaFile\": \"{_redis.CaFile}\",", StringComparison.Ordinal)
            : config;
    }

    /// <summary>A CA and a server certificate for localhost/127.0.0.1 (PEM files in a temp directory), and a redis-server with a TLS port.</summary>
    public sealed class TlsRedis : IDisposable
    {
        private readonly string _directory = Directory.CreateTempSubdirectory("llmgw-tls-").FullName;

        public TlsRedis()
        {
            CaFile = Path.Combine(_directory, "ca.pem");
            var certFile = Path.Combine(_directory, "redis.pem");
            var keyFile = Path.Combine(_directory, "redis.key");
            using var caKey = RSA.Create(2048);
            var caRequest = new CertificateRequest("CN=llmgw test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
            caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

            using var serverKey = RSA.Create(2048);
            var serverRequest = new CertificateRequest("CN=localhost", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
            var names = new SubjectAlternativeNameBuilder();
            names.AddDnsName("localhost");
            names.AddIpAddress(IPAddress.Loopback);
            serverRequest.CertificateExtensions.Add(names.Build());
            serverRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
            serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            using var server = serverRequest.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), RandomNumberGenerator.GetBytes(16));

            File.WriteAllText(CaFile, ca.ExportCertificatePem());
            File.WriteAllText(certFile, server.ExportCertificatePem());
            File.WriteAllText(keyFile, serverKey.ExportPkcs8PrivateKeyPem());

            TlsPort = RedisServerFixture.FreePort();
            Server = new RedisServerFixture([
                "--tls-port", TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", CaFile, "--tls-auth-clients", "no",
            ]);
        }

        /// <summary>The plain port stays open for the fixture's own PING and the test's checks; the gateway uses <see cref="TlsPort"/>.</summary>
        public RedisServerFixture Server { get; }

        public int TlsPort { get; }

        public string CaFile { get; }

        public void Dispose()
        {
            Server.Dispose();
            Directory.Delete(_directory, recursive: true);
        }
    }
}
