//! A small XML well-formedness checker that reads SVG into a tree (for the SVG tests).

#![allow(dead_code)]

use std::collections::BTreeMap;

/// An XML element: name, attributes, children, and its direct text.
#[derive(Debug, Default)]
pub struct Element {
    pub name: String,
    pub attrs: BTreeMap<String, String>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }

    /// This element and every descendant, depth first.
    pub fn descendants(&self) -> Vec<&Element> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let e = out[i];
            out.extend(e.children.iter());
            i += 1;
        }
        out
    }

    /// The direct text of the element's `<title>` child, if any.
    pub fn title(&self) -> Option<&str> {
        self.children
            .iter()
            .find(|c| c.name == "title")
            .map(|t| t.text.as_str())
    }

    pub fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|x| x == class))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':' | '.')
}

/// Decodes entity and character references; refuses a raw `<` or an unknown or unterminated
/// reference.
fn decode(s: &str, at: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find(['&', '<']) {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with('<') {
            return Err(format!("raw '<' in text or attribute near byte {at}"));
        }
        let end = rest[i..]
            .find(';')
            .ok_or_else(|| format!("unterminated reference near byte {at}"))?;
        let name = &rest[i + 1..i + end];
        out.push(match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad reference &{n}; near byte {at}"))?,
            n if n.starts_with('#') => n[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad reference &{n}; near byte {at}"))?,
            n => return Err(format!("unknown entity &{n}; near byte {at}")),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses a well-formed XML document (prolog, comments, elements, attributes, text and
/// references; no DTD, no CDATA) into its root element, or says what is wrong and where.
pub fn parse_xml(doc: &str) -> Result<Element, String> {
    let mut pos = 0;
    let b = doc.as_bytes();
    let skip_ws = |pos: &mut usize| {
        while *pos < b.len() && (b[*pos] as char).is_ascii_whitespace() {
            *pos += 1;
        }
    };
    if doc[pos..].starts_with("<?xml") {
        pos = doc[pos..]
            .find("?>")
            .ok_or("unterminated XML declaration")?
            + 2;
    }
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        if stack.is_empty() {
            skip_ws(&mut pos);
            if pos >= b.len() {
                break;
            }
        }
        if pos >= b.len() {
            return Err(format!("unclosed <{}>", stack.last().unwrap().name));
        }
        if doc[pos..].starts_with("<!--") {
            let end = doc[pos..].find("-->").ok_or("unterminated comment")?;
            if doc[pos + 4..pos + end].contains("--") {
                return Err(format!("'--' inside a comment at byte {pos}"));
            }
            pos += end + 3;
            continue;
        }
        if doc[pos..].starts_with("</") {
            let end = doc[pos..].find('>').ok_or("unterminated end tag")? + pos;
            let name = doc[pos + 2..end].trim_end();
            let open = stack
                .pop()
                .ok_or_else(|| format!("</{name}> without an open element at byte {pos}"))?;
            if open.name != name {
                return Err(format!("</{name}> closes <{}> at byte {pos}", open.name));
            }
            match stack.last_mut() {
                Some(parent) => parent.children.push(open),
                None if root.is_none() => root = Some(open),
                None => return Err("more than one root element".into()),
            }
            pos = end + 1;
            continue;
        }
        if b[pos] == b'<' {
            if stack.is_empty() && root.is_some() {
                return Err(format!("second root element at byte {pos}"));
            }
            pos += 1;
            let start = pos;
            while pos < b.len() && is_name_char(b[pos] as char) {
                pos += 1;
            }
            let mut e = Element {
                name: doc[start..pos].to_string(),
                ..Default::default()
            };
            if e.name.is_empty() || !(e.name.as_bytes()[0] as char).is_ascii_alphabetic() {
                return Err(format!("bad element name at byte {start}"));
            }
            loop {
                let before = pos;
                skip_ws(&mut pos);
                if pos >= b.len() {
                    return Err("unterminated start tag".into());
                }
                if doc[pos..].starts_with("/>") {
                    pos += 2;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(e),
                        None if root.is_none() => root = Some(e),
                        None => return Err("more than one root element".into()),
                    }
                    break;
                }
                if b[pos] == b'>' {
                    pos += 1;
                    stack.push(e);
                    break;
                }
                if before == pos {
                    return Err(format!("no space before attribute at byte {pos}"));
                }
                let start = pos;
                while pos < b.len() && is_name_char(b[pos] as char) {
                    pos += 1;
                }
                let name = doc[start..pos].to_string();
                if name.is_empty() || doc.as_bytes().get(pos) != Some(&b'=') {
                    return Err(format!("bad attribute at byte {start}"));
                }
                pos += 1;
                let quote = *b.get(pos).ok_or("unterminated attribute")?;
                if quote != b'"' && quote != b'\'' {
                    return Err(format!("unquoted attribute {name} at byte {pos}"));
                }
                let end = doc[pos + 1..]
                    .find(quote as char)
                    .ok_or("unterminated attribute value")?
                    + pos
                    + 1;
                let value = decode(&doc[pos + 1..end], pos)?;
                if e.attrs.insert(name.clone(), value).is_some() {
                    return Err(format!("duplicate attribute {name} at byte {start}"));
                }
                pos = end + 1;
            }
            continue;
        }
        // Text.
        let end = doc[pos..].find('<').map_or(b.len(), |i| i + pos);
        let text = decode(&doc[pos..end], pos)?;
        match stack.last_mut() {
            Some(e) => e.text.push_str(&text),
            None if text.trim().is_empty() => {}
            None => return Err(format!("text outside the root at byte {pos}")),
        }
        pos = end;
    }
    root.ok_or_else(|| "no root element".into())
}
