//! A plain WASI command speaking the stdio ABI, no SDK: the parameters arrive as JSON on stdin,
//! the result is the last line printed to stdout, everything else printed is a log line.
//! Any language that makes a WASI command can write actions this way.

// Printing is what this action is for: its output is its log.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use serde_json::{Value, json};
use std::io::Read;

fn main() {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .expect("stdin is readable");
    let params: Value = if input.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&input).expect("the parameters are JSON")
    };
    println!("adding {} and {}", params["param1"], params["param2"]);
    eprintln!("a line on stderr");
    let sum = params["param1"].as_i64().unwrap_or(0) + params["param2"].as_i64().unwrap_or(0);
    println!("{}", json!({ "result": sum }));
}
