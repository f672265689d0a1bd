//! Serves a fake Okta until ctrl-c: `cargo run -p oktasync-fake-okta --example serve --
//! [ADDR] [USERS] [GROUPS]` (defaults 127.0.0.1:0, 100, 10). Prints `FAKE_OKTA_URL=…`.

use fake_okta::{Options, run_until_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let mut options = Options::default();
    if let Some(users) = args.next() {
        options.users = users.parse()?;
    }
    if let Some(groups) = args.next() {
        options.groups = groups.parse()?;
    }
    run_until_signal(listen, options).await
}
