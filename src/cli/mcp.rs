//! `manimd mcp`: the MCP tools on stdin and stdout, for an assistant that
//! starts manimd as its tool server; each call goes to a manimd server over
//! its HTTP API (`manimd::mcp::Remote`).

use std::process::ExitCode;

use super::McpArgs;
use manimd::client::Client;

pub async fn run(args: McpArgs) -> ExitCode {
    let client = match Client::new(&args.server, args.api_key.as_deref()) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Stdout is the protocol's: anything to say goes to stderr.
    match manimd::mcp::serve_stdio(client).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
