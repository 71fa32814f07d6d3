# vod-uploader: the two newcomer commands are `make demo` and `make test`.
# Both install what they need first (the wasm32-wasip1 target; see .ci/ensure-wasm-target).

CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/vod_uploader.wasm
# The command-line uploader, a command component (`make wasm`).
CLI_WASM := target/vod-upload.wasm

.PHONY: setup wasm demo test test-wasmtime bench bench-vod clean

# Ensures the wasm target; remembers which toolchain directory builds wasm (empty for
# rustup's, /usr/bin for the offline fallback) in target/.wasm-path.
# Then SeaweedFS (the S3 server of the end-to-end tests; .ci/ensure-seaweedfs), its
# path in target/.weed-path, and Redis (the store several `host-sim up` instances
# share; Debian's redis-server via .ci/ensure-redis), its path in target/.redis-path.
# Without either, setup goes on (those tests say SKIPPED), except in CI (CI set),
# where a missing one fails setup.
setup:
	@mkdir -p target
	@./.ci/ensure-wasm-target > target/.wasm-setup.out
	@tail -n 1 target/.wasm-setup.out > target/.wasm-path
	@if ./.ci/ensure-seaweedfs > target/.weed-setup.out; then \
		tail -n 1 target/.weed-setup.out > target/.weed-path; \
	else \
		: > target/.weed-path; \
		if [ -n "$${CI:-}" ]; then echo "SeaweedFS is required in CI: see the ensure-seaweedfs errors above" >&2; exit 1; fi; \
		echo "SeaweedFS unavailable: its tests will print SKIPPED (seaweedfs)" >&2; \
	fi
	@if ./.ci/ensure-redis > target/.redis-setup.out; then \
		tail -n 1 target/.redis-setup.out > target/.redis-path; \
	else \
		: > target/.redis-path; \
		if [ -n "$${CI:-}" ]; then echo "Redis is required in CI: see the ensure-redis errors above" >&2; exit 1; fi; \
		echo "Redis unavailable: its tests will print SKIPPED (redis)" >&2; \
	fi

# The Spin component, exactly as spin.toml's build command makes it; then the hashing
# harness (the core without the component; its own build, so features do not unify);
# then the command-line uploader, without the Spin component, made a command component
# with wasmtime 48's preview1 command adapter (`wasmtime run -S http` runs components
# only): $(CLI_WASM).
wasm: setup
	@WASM_PATH=$$(cat target/.wasm-path); \
	if [ -n "$$WASM_PATH" ]; then export PATH="$$WASM_PATH:$$PATH"; fi; \
	$(CARGO) build --target $(WASM_TARGET) --release -p vod-uploader && \
	$(CARGO) build --target $(WASM_TARGET) --release -p hashbench && \
	$(CARGO) build --target $(WASM_TARGET) --release -p vod-uploader --no-default-features --features cli --bin vod-upload
	$(CARGO) run --quiet -p componentize -- --command target/$(WASM_TARGET)/release/vod-upload.wasm $(CLI_WASM)
	@ls -l $(WASM) $(CLI_WASM)

# The main job on embedded defaults.
demo: wasm
	$(CARGO) run -p host-sim -- demo

# Every test: the wasm build, then unit, property and end-to-end tests.
test: wasm
	$(CARGO) test --workspace

# wasmtime 48's own CLI, from crates.io (`run` with wasi:http only; about 20 minutes
# on 2 cores), for the tests below; WASMTIME=/path/to/wasmtime uses one you have.
WASMTIME_VERSION := 48.0.8
WASMTIME ?= target/wasmtime-cli/bin/wasmtime
target/wasmtime-cli/bin/wasmtime:
	$(CARGO) install wasmtime-cli --version $(WASMTIME_VERSION) --locked --root target/wasmtime-cli \
		--target-dir target/wasmtime-cli-build --no-default-features \
		--features run,cranelift,component-model,wasi-http,parallel-compilation,pooling-allocator,cache

# The command-line uploader's end-to-end tests on the real `wasmtime run` instead of
# host-sim's stand-in (make test runs them on the stand-in).
test-wasmtime: wasm $(WASMTIME)
	VOD_WASMTIME=$(abspath $(WASMTIME)) $(CARGO) test -p host-sim --test cli_wasm

# The uploader's benchmarks (see README "Performance"); release build, JSON in target/bench.json.
# The `hash` case also needs the hashing harness built natively with the sha1 crate's
# portable backend (its own target dir: the cfg applies to every crate of that build).
bench: wasm
	RUSTFLAGS='--cfg sha1_backend="soft"' $(CARGO) build --release -p hashbench --target-dir target/portable
	$(CARGO) run --release -p host-sim -- bench

# The simulator's ingest rate (a benchmark, not a test).
bench-vod:
	$(CARGO) run --release -p host-sim -- bench-vod

clean:
	$(CARGO) clean
