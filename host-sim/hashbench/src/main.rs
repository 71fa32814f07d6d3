//! `hashbench [MIB] [ROUNDS] [CHUNK_KIB]`: prints the figures of [`hashbench::measure`]
//! as one line of JSON. `hashbench check [CASES]` runs [`hashbench::check`] and prints
//! `ok`. Built for wasm32-wasip1 it is run by `host-sim bench` (and host-sim's tests)
//! under the same wasmtime configuration as the component.

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let checking = args.first().is_some_and(|a| a == "check");
    if checking {
        args.remove(0);
    }
    let arg = |i: usize, default: usize| -> usize {
        match args.get(i) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("hashbench: argument {} must be a whole number, got {v:?}", i + 1);
                std::process::exit(2)
            }),
        }
    };
    if checking {
        match hashbench::check(arg(0, 200) as u32) {
            Ok(()) => println!("ok"),
            Err(e) => {
                eprintln!("hashbench check: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let mut plan = hashbench::Plan::default();
    plan.bytes = arg(0, plan.bytes >> 20) << 20;
    plan.rounds = arg(1, plan.rounds as usize) as u32;
    plan.chunk = arg(2, plan.chunk >> 10) << 10;
    if plan.bytes == 0 || plan.chunk == 0 {
        eprintln!("hashbench: the size and the chunk must not be zero");
        std::process::exit(2);
    }
    let data = hashbench::sample(plan.bytes);
    println!("{}", hashbench::to_json(&hashbench::measure(&plan, &data)));
}
