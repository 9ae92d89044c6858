//! The smallest useful avm plugin: `cat /hello/world` → `Hello, world!`.
//! The README's "write your own WASM provider in 5 minutes" walks through this file.

use avm_plugin::{Caller, Entry, Error, Info, Provider, Request, Result, Suffix, export};

struct Hello;

impl Provider for Hello {
    fn describe() -> Info {
        Info::new("greets whoever the path names")
            .lists()
            .suffix(Suffix::file("shout", "the greeting in capitals"))
    }

    fn read(req: Request) -> Result<String> {
        // Mounted as `/hello/{name}` or `/hello/**`: the name is the capture, or the last segment.
        let name = req
            .capture("name")
            .or_else(|| req.capture("**"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::is_a_directory(&req.path))?;
        let asked_by = match &req.caller {
            Caller::Agent(a) => format!(" (asked by {a})"),
            Caller::Operator => String::new(),
        };
        let text = format!("Hello, {name}!{asked_by}\n");
        Ok(match req.suffix.as_deref() {
            Some("shout") => text.to_uppercase(),
            _ => text,
        })
    }

    fn list(_req: Request) -> Result<Vec<Entry>> {
        Ok(vec![Entry::file("world", 14)])
    }
}

export!(Hello);
