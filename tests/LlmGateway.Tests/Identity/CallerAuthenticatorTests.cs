using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Tests.Identity;

public sealed class CallerAuthenticatorTests
{
    private static readonly GatewayConfig Config = GatewayConfigLoader.Load(Encoding.UTF8.GetBytes($$"""
    {
      "Gateway": {
        "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": { "m": { "Provider": "p", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 } },
        "Keys": [
          { "Key": "sk-plain", "User": "plain-user" },
          { "KeySha256": "{{KeyHashing.Sha256Hex("sk-hashed")}}", "User": "hashed-user", "Models": [ "m" ] }
        ]
      }
    }
    """), new ConfigurationBuilder().Build());

    private static HttpRequest Request(string header, string value)
    {
        var context = new DefaultHttpContext();
        context.Request.Headers[header] = value;
        return context.Request;
    }

    [Theory]
    [InlineData("Authorization", "Bearer sk-plain", "plain-user")]
    [InlineData("Authorization", "bearer   sk-hashed ", "hashed-user")]
    [InlineData("api-key", "sk-hashed", "hashed-user")]
    [InlineData("x-api-key", "sk-plain", "plain-user")]
    public void Authenticate_KnownKey_MapsToUser(string header, string value, string user)
    {
        Assert.Null(CallerAuthenticator.Authenticate(Request(header, value), Config, out var caller));
        Assert.Equal(user, caller.User);
    }

    [Theory]
    [InlineData("Authorization", "Bearer sk-unknown")]
    [InlineData("Authorization", "Basic c2stcGxhaW4=")]
    [InlineData("X-Other", "sk-plain")]
    public void Authenticate_UnknownOrMissingKey_Is401_AndNeverEchoesTheKey(string header, string value)
    {
        var error = CallerAuthenticator.Authenticate(Request(header, value), Config, out _);

        Assert.Equal(401, error!.Value.Status);
        Assert.DoesNotContain("sk-", error.Value.Message);
    }

    [Fact]
    public void KeyId_DefaultsToHashPrefix_NeverTheKey()
    {
        CallerAuthenticator.Authenticate(Request("Authorization", "Bearer sk-plain"), Config, out var caller);

        Assert.Equal(KeyHashing.Sha256Hex("sk-plain")[..8], caller.Id);
    }

    [Theory]
    [InlineData("run-1", true)]
    [InlineData("agent:run_2.3", true)]
    [InlineData("has space", false)]
    [InlineData("ünïcode", false)]
    [InlineData("", false)]
    public void IsValidId_AllowsSafeCharacters(string id, bool valid) => Assert.Equal(valid, CallerAuthenticator.IsValidId(id));

    [Fact]
    public void IsValidId_RejectsOver128Characters()
    {
        Assert.True(CallerAuthenticator.IsValidId(new string('a', 128)));
        Assert.False(CallerAuthenticator.IsValidId(new string('a', 129)));
    }
}
