using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(LlmGateway.Benchmarks.Payloads).Assembly).Run(args);
