//! TypeScript and JavaScript: `function`s, classes and their methods, interfaces, type aliases,
//! enums, namespaces, and `const x = (…) =>` arrow functions, exported or not.
//!
//! Top-level declarations (and those in namespaces) are listed; methods are listed only
//! directly inside a class body. A brace stack tells the two apart, so object literals and
//! function bodies never contribute.

use std::sync::LazyLock;

use regex::Regex;

use super::{Brackets, Signature, Source, compile, find_top, finish, lex::Syntax, word_at};

const BR: Brackets = Brackets { angles: true };
const IDENT: &str = r"[A-Za-z_$][A-Za-z0-9_$]*";

static FUNCTION: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:async\s+)?function\b\s*\*?\s*(?P<name>{IDENT})?"
    ))
});

static CLASS: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?class\b\s*(?P<name>{IDENT})?"
    ))
});

static DECL: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*(?:export\s+)?(?:declare\s+)?(?:const\s+)?(?P<kw>interface|type|enum|namespace|module)\s+(?P<name>{IDENT}|['\x22])"
    ))
});

/// `const f = (`, `const f = async x =>`, `const f: T = function`, `let g = <T,>(`.
static ARROW: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*(?:export\s+)?(?:default\s+)?(?:const|let|var)\s+(?P<name>{IDENT})\s*(?::[^=]*)?=\s*(?:async\s+)?(?:function\b|\(|<|{IDENT}\s*=>)"
    ))
});

const MODIFIERS: &str = r"(?:(?:public|private|protected|static|readonly|abstract|override|async|declare|accessor)\s+)*";

static METHOD: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*{MODIFIERS}(?:(?:get|set)\s+)?\*?\s*(?P<name>#?{IDENT})\s*\??\s*(?:<[^(]*>)?\s*\("
    ))
});

/// A class property holding an arrow function: `handle = (e) => {`.
static PROPERTY_ARROW: LazyLock<Regex> = LazyLock::new(|| {
    compile(&format!(
        r"^\s*{MODIFIERS}(?P<name>#?{IDENT})\s*(?::[^=]*)?=\s*(?:async\s+)?(?:\(|{IDENT}\s*=>)"
    ))
});

/// Words that look like a method call at the start of a line inside a class body but are not.
const NOT_METHODS: &[&str] = &[
    "if", "for", "while", "switch", "catch", "return", "new", "super", "this", "function", "with",
    "await", "typeof", "delete", "void", "yield", "throw",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Namespace,
    Class,
    Fn,
    Other,
}

/// Signatures of a TypeScript or JavaScript source file.
pub fn extract(src: &str) -> Vec<Signature> {
    let s = Source::new(src, Syntax::Script);
    let mut out = Vec::new();
    let mut stack: Vec<Block> = Vec::new();
    let mut pending: Option<Block> = None;
    let mut parens = 0i64;
    let mut angles = 0i64;
    for i in 0..s.len() {
        let m = s.masked[i].as_str();
        if parens == 0 {
            let top_level = stack.iter().all(|b| *b == Block::Namespace);
            let depth = u32::try_from(stack.len()).unwrap_or(u32::MAX);
            let found = if top_level {
                declaration(&s, i, depth)
            } else if stack.last() == Some(&Block::Class)
                && stack[..stack.len() - 1]
                    .iter()
                    .all(|b| matches!(b, Block::Namespace | Block::Class))
            {
                method(&s, i, depth)
            } else {
                None
            };
            if let Some((sig, block)) = found {
                out.push(sig);
                pending = Some(block);
                angles = 0;
            }
        }
        let bytes = m.as_bytes();
        for (k, &c) in bytes.iter().enumerate() {
            match c {
                b'(' | b'[' => parens += 1,
                b')' | b']' => parens = (parens - 1).max(0),
                // Generic parameters of a pending header may hold braces (`<T extends { id:
                // string }>`), which must not be taken for the body.
                b'<' if pending.is_some() => angles += 1,
                b'>' if pending.is_some() && !(k > 0 && matches!(bytes[k - 1], b'-' | b'=')) => {
                    angles = (angles - 1).max(0);
                }
                b'{' => {
                    let b = if parens == 0 && angles == 0 {
                        pending.take()
                    } else {
                        None
                    };
                    stack.push(b.unwrap_or(Block::Other));
                }
                b'}' => {
                    stack.pop();
                }
                b';' if parens == 0 => pending = None,
                _ => {}
            }
        }
    }
    out
}

fn line_no(i: usize) -> u32 {
    u32::try_from(i + 1).unwrap_or(u32::MAX)
}

fn name_of(c: &regex::Captures) -> String {
    c.name("name").map_or("", |x| x.as_str()).to_string()
}

/// A top-level declaration on line `i`.
fn declaration(s: &Source, i: usize, depth: u32) -> Option<(Signature, Block)> {
    let m = s.masked[i].as_str();
    let make = |kind: &str, name: String, text: String| Signature {
        line: line_no(i),
        kind: kind.into(),
        name,
        depth,
        text,
    };
    if let Some(c) = FUNCTION.captures(m) {
        let name = name_of(&c);
        let name = if name.is_empty() {
            "default".into()
        } else {
            name
        };
        return Some((make("function", name, body_cut(s, i)), Block::Fn));
    }
    if let Some(c) = CLASS.captures(m) {
        let name = name_of(&c);
        let name = if name.is_empty() {
            "default".into()
        } else {
            name
        };
        return Some((make("class", name, body_cut(s, i)), Block::Class));
    }
    if let Some(c) = DECL.captures(m) {
        let kw = c.name("kw").map_or("", |x| x.as_str());
        let mut name = name_of(&c);
        if name.starts_with(['\'', '"']) {
            // `declare module "x"`: the name is in the (masked) string; read the original.
            name = s.orig[i]
                .split(['\'', '"'])
                .nth(1)
                .unwrap_or_default()
                .to_string();
        }
        let (kind, block) = match kw {
            "namespace" | "module" => ("namespace", Block::Namespace),
            other => (other, Block::Other),
        };
        return Some((make(kind, name, body_cut(s, i)), block));
    }
    if let Some(c) = ARROW.captures(m) {
        let text = arrow_text(s, i)?;
        return Some((make("function", name_of(&c), text), Block::Fn));
    }
    None
}

/// A method (or arrow-function property) directly in a class body, on line `i`.
fn method(s: &Source, i: usize, depth: u32) -> Option<(Signature, Block)> {
    let m = s.masked[i].as_str();
    let (name, text) = if let Some(c) = METHOD.captures(m) {
        (name_of(&c), body_cut(s, i))
    } else {
        let c = PROPERTY_ARROW.captures(m)?;
        (name_of(&c), arrow_text(s, i)?)
    };
    if NOT_METHODS.contains(&name.as_str()) {
        return None;
    }
    let sig = Signature {
        line: line_no(i),
        kind: "method".into(),
        name,
        depth,
        text,
    };
    Some((sig, Block::Fn))
}

/// The declaration from line `i`, cut before its body or `;`.
fn body_cut(s: &Source, i: usize) -> String {
    let j = s.join(i, BR);
    let at = find_top(&j.masked, BR, |b, k| matches!(b[k], b'{' | b';'));
    finish(&j.orig, at)
}

/// An arrow function's head up to and including `=>` (or a `function` expression's head);
/// `None` when the initialiser turns out not to be a function (`const x = (a + b) * c`).
fn arrow_text(s: &Source, i: usize) -> Option<String> {
    let j = s.join(i, BR);
    let b = j.masked.as_bytes();
    let eq = find_top(&j.masked, BR, |b, k| {
        b[k] == b'=' && b.get(k + 1) != Some(&b'>') && (k == 0 || !b"=!<>".contains(&b[k - 1]))
    })?;
    if let Some(k) = find_top(&j.masked, BR, |b, k| {
        b[k] == b'=' && b.get(k + 1) == Some(&b'>')
    })
    .filter(|&k| k > eq)
    {
        return Some(finish(&j.orig, Some(k + 2)));
    }
    let after = eq + 1 + (b.len() - eq - 1 - j.masked[eq + 1..].trim_start().len());
    let rest = &b[after..];
    let func = word_at(rest, 0, b"function")
        || (word_at(rest, 0, b"async")
            && j.masked[after + 5..].trim_start().starts_with("function"));
    if func {
        let at = find_top(&j.masked, BR, |b, k| k > eq && matches!(b[k], b'{' | b';'));
        return Some(finish(&j.orig, at));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(src: &str) -> Vec<(String, String, u32)> {
        extract(src)
            .into_iter()
            .map(|s| (s.kind, s.text, s.depth))
            .collect()
    }

    fn texts(src: &str) -> Vec<String> {
        extract(src).into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn functions_and_exports_are_found() {
        let src = r#"
import { x } from "./x";
function helper(a: number): number {
  return a;
}
export function publicFn<T>(items: T[]): T | undefined {
  return items[0];
}
export default function (req, res) {}
export async function* stream() {}
export default class App extends Base<Props> {}
export abstract class Shape {}
export interface Options { a?: string }
export type Id = string | number;
type Handler = (e: Event) => void;
export enum Color { Red, Green }
declare module "lib" {
  export function fromLib(): void;
}
"#;
        assert_eq!(
            texts(src),
            vec![
                "function helper(a: number): number",
                "export function publicFn<T>(items: T[]): T | undefined",
                "export default function (req, res)",
                "export async function* stream()",
                "export default class App extends Base<Props>",
                "export abstract class Shape",
                "export interface Options",
                "export type Id = string | number",
                "type Handler = (e: Event) => void",
                "export enum Color",
                "declare module \"lib\"",
                "export function fromLib(): void",
            ]
        );
        let names: Vec<String> = extract(src).into_iter().map(|s| s.name).collect();
        assert_eq!(names[2], "default");
        assert_eq!(names[10], "lib");
    }

    #[test]
    fn arrow_function_exports_are_found_and_plain_constants_are_not() {
        let src = r#"
export const add = (a: number, b: number): number => a + b;
export const load = async (
  id: string,
  opts?: { force: boolean },
): Promise<Item> => {
  return get(id);
};
const single = x => x * 2;
const generic = <T,>(x: T) => x;
const legacy = function (a) { return a; };
const total = (a + b) * c;
export const config = { a: 1 };
const callback = useCallback(() => {}, []);
"#;
        assert_eq!(
            texts(src),
            vec![
                "export const add = (a: number, b: number): number =>",
                "export const load = async (id: string, opts?: { force: boolean }): Promise<Item> =>",
                "const single = x =>",
                "const generic = <T,>(x: T) =>",
                "const legacy = function (a)",
            ]
        );
    }

    #[test]
    fn class_methods_are_nested_and_bodies_are_skipped() {
        let src = r#"
export class Service {
  private cache = new Map<string, number>();
  constructor(private readonly db: Db) {}
  async get(id: string): Promise<Item> {
    if (id) {
      return this.db.find(id);
    }
    const inner = () => {};
  }
  static create(): Service {
    return new Service(db);
  }
  get size(): number { return 0; }
  #secret() {}
  onClick = (e: MouseEvent) => {
    this.handle(e);
  };
  abstract draw(): void;
}
function outer() {
  function innerFn() {}
  const obj = {
    method() {},
  };
}
"#;
        let got = shown(src);
        let got: Vec<(&str, &str, u32)> = got
            .iter()
            .map(|(k, t, d)| (k.as_str(), t.as_str(), *d))
            .collect();
        assert_eq!(
            got,
            vec![
                ("class", "export class Service", 0),
                ("method", "constructor(private readonly db: Db)", 1),
                ("method", "async get(id: string): Promise<Item>", 1),
                ("method", "static create(): Service", 1),
                ("method", "get size(): number", 1),
                ("method", "#secret()", 1),
                ("method", "onClick = (e: MouseEvent) =>", 1),
                ("method", "abstract draw(): void", 1),
                ("function", "function outer()", 0),
            ]
        );
    }

    #[test]
    fn braces_in_generics_and_decorators_do_not_hide_the_class_body() {
        let src = r#"
@Injectable({ providedIn: 'root' })
export class UserService<T extends { id: string }> implements OnInit {
  @Input() name: string;
  constructor(
    private http: HttpClient,
    @Inject(TOKEN) private token: string,
  ) {}
  public async findAll(filter?: Partial<T>): Promise<T[]> {
    const re = /\{[a-z]+\}/g;
    return [];
  }
  protected static helper<K extends keyof T>(key: K): void {}
  handle = async (event: CustomEvent<{ detail: string }>): Promise<void> => {
    console.log(`value: ${event.detail}`);
  };
}
export function overload(a: string): string;
export function overload(a: any): any {
  return a;
}
export interface Repo<T> {
  get(id: string): Promise<T>;
}
"#;
        assert_eq!(
            texts(src),
            vec![
                "export class UserService<T extends { id: string }> implements OnInit",
                "constructor(private http: HttpClient, @Inject(TOKEN) private token: string)",
                "public async findAll(filter?: Partial<T>): Promise<T[]>",
                "protected static helper<K extends keyof T>(key: K): void",
                "handle = async (event: CustomEvent<{ detail: string }>): Promise<void> =>",
                "export function overload(a: string): string",
                "export function overload(a: any): any",
                "export interface Repo<T>",
            ]
        );
    }

    #[test]
    fn comments_templates_and_strings_hide_fake_functions() {
        let src = "// function fake() {}\n/*\nfunction fake2() {}\n*/\nconst t = `\nfunction fake3() {}\n`;\nconst s = 'function fake4() {';\nfunction real() {}\n";
        assert_eq!(texts(src), vec!["function real()"]);
    }

    #[test]
    fn jsx_components_are_found() {
        let src = "export default function App({ title }: Props) {\n  return <div className=\"x\">{title}</div>;\n}\nexport const Item = ({ name }) => <li>{name}</li>;\n";
        assert_eq!(
            texts(src),
            vec![
                "export default function App({ title }: Props)",
                "export const Item = ({ name }) =>",
            ]
        );
    }
}
