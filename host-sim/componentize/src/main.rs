//! `componentize --command|--reactor IN OUT`: writes IN (a wasm32-wasip1 module) as a
//! component to OUT, written whole or not at all.

use anyhow::{bail, Context as _};
use componentize::{componentize, Adapter};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (adapter, input, output) = match args.as_slice() {
        [flag, input, output] if flag == "--command" => (Adapter::Command, input, output),
        [flag, input, output] if flag == "--reactor" => (Adapter::Reactor, input, output),
        _ => bail!("usage: componentize --command|--reactor IN.wasm OUT.wasm"),
    };
    let module = std::fs::read(input).with_context(|| format!("cannot read {input}"))?;
    let component = componentize(&module, adapter).with_context(|| format!("cannot make {input} a component"))?;
    let temp = format!("{output}.tmp");
    std::fs::write(&temp, &component).with_context(|| format!("cannot write {temp}"))?;
    std::fs::rename(&temp, output).with_context(|| format!("cannot write {output}"))?;
    eprintln!("{output}: component, {} bytes", component.len());
    Ok(())
}
