//! `vod-upload`: the command-line uploader (see `vod-upload --help` and the README).
//! Built for wasm32-wasip1 and made a command component by `make wasm`; run it with
//! `wasmtime run -S http --dir DIR::/data vod-upload.wasm upload /data/clip.mp4`.

#[cfg(all(target_arch = "wasm32", feature = "cli"))]
fn main() {
    vod_uploader::cli::wasi::exit(vod_uploader::cli::wasi::main())
}

#[cfg(not(all(target_arch = "wasm32", feature = "cli")))]
fn main() {
    eprintln!("vod-upload runs as WebAssembly: build it with `make wasm` and run it with `wasmtime run -S http`");
    std::process::exit(vod_uploader::cli::Exit::Usage.code())
}
