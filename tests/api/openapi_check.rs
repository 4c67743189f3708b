//! Checks HTTP requests and answers against an official OpenAPI description, for the fakes of
//! GitHub (OpenAPI 3.0, `@octokit/openapi`) and Koyeb (Swagger 2.0, `koyeb-api-client-go`).
//!
//! A fake names the operations it serves (method + path template as written in the
//! description); [`Description::load`] picks those out, turns their schemas into plain JSON
//! Schema (draft 4, which OpenAPI 3.0 and Swagger 2.0 schemas are built on) and compiles them
//! once. The rest of the description is dropped right away: GitHub's is 13 MB.
//!
//! What the conversion does, and why:
//! - `$ref`s are inlined; a schema that refers to itself while being inlined becomes `{}` (the
//!   descriptions we use have no recursion in the operations served, so nothing is lost).
//! - `nullable: true` (OpenAPI 3.0) and `x-nullable: true` (Swagger 2.0) add `null` to the type:
//!   JSON Schema has no such keyword and would ignore it, refusing every `null`.
//! - Objects in *request* bodies are closed (`additionalProperties: false` unless the
//!   description says otherwise): both APIs ignore a field they do not know, so a misspelt or
//!   invented field would silently do nothing. Members of an `allOf` stay open, since closing
//!   them would refuse the other members' fields. Answers are not closed.
//!
//! Answers are checked for the statuses the operation describes (and `default`); a success the
//! description does not list is a violation, an error status it does not list (e.g. a 502
//! from fault injection) is not checked.

use std::collections::BTreeMap;

use jsonschema::{Draft, Validator};
use serde_json::{json, Map, Value};

pub struct Description {
    operations: Vec<Operation>,
}

pub struct Operation {
    /// e.g. `POST /orgs/{org}/repos`.
    pub name: String,
    method: String,
    template: Vec<Segment>,
    params: BTreeMap<(Place, String), Param>,
    body: Option<Body>,
    responses: BTreeMap<String, Option<Validator>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Path,
    Query,
}

enum Segment {
    Literal(String),
    /// A path parameter; `rest` when it may span several segments (`x-multi-segment`, or a
    /// repository path / git ref as the last segment).
    Param {
        name: String,
        rest: bool,
    },
}

struct Param {
    required: bool,
    /// The schema's `type`, to read the text of a query or path value as JSON.
    kind: String,
    validator: Validator,
}

struct Body {
    required: bool,
    validator: Validator,
}

impl Description {
    /// Reads the description at `path` and keeps the `served` operations (`(method, template)`).
    /// Panics when one is missing: the fake and the description have drifted apart.
    pub fn load(path: &str, served: &[(&str, &str)]) -> Description {
        let text = std::fs::read(path).unwrap_or_else(|e| {
            panic!("read the API description {path}: {e} (run `npm ci` in tests/openapi?)")
        });
        let root: Value = serde_json::from_slice(&text).expect("the API description is JSON");
        Description::from_value(&root, served)
    }

    /// Like [`Description::load`], from a parsed description.
    pub fn from_value(root: &Value, served: &[(&str, &str)]) -> Description {
        let swagger2 = root.get("swagger").is_some();
        let operations = served
            .iter()
            .map(|(method, template)| {
                let path_item = root["paths"]
                    .get(*template)
                    .unwrap_or_else(|| panic!("{template} is not in the description"));
                let op = path_item
                    .get(method.to_lowercase())
                    .unwrap_or_else(|| panic!("{method} {template} is not in the description"));
                Operation::new(root, swagger2, method, template, path_item, op)
            })
            .collect();
        Description { operations }
    }

    /// The served operation `path` (without query) falls under. Among several matches the
    /// longest template wins (`/repos/{owner}/{repo}/git/refs/{ref}` over
    /// `/repos/{owner}/{repo}`).
    pub fn operation(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(&Operation, Vec<(String, String)>)> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method))
            .filter_map(|op| Some((op, op.match_path(&segments)?)))
            .max_by_key(|(op, _)| op.template.len())
    }
}

impl Operation {
    fn new(
        root: &Value,
        swagger2: bool,
        method: &str,
        template: &str,
        path_item: &Value,
        op: &Value,
    ) -> Operation {
        let name = format!("{method} {template}");
        let declared: Vec<Value> = [&path_item["parameters"], &op["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
            .map(|p| resolve(root, p).clone())
            .collect();
        let multi_segment: Vec<&str> = declared
            .iter()
            .filter(|p| p["x-multi-segment"] == true)
            .filter_map(|p| p["name"].as_str())
            .collect();
        let parts: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let template_segments = parts
            .iter()
            .enumerate()
            .map(
                |(i, part)| match part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    Some(param) => Segment::Param {
                        name: param.to_string(),
                        rest: multi_segment.contains(&param)
                            || (i + 1 == parts.len() && matches!(param, "path" | "ref")),
                    },
                    None => Segment::Literal(part.to_string()),
                },
            )
            .collect();

        let mut params = BTreeMap::new();
        let mut body = None;
        for p in &declared {
            let place = match p["in"].as_str() {
                Some("path") => Place::Path,
                Some("query") => Place::Query,
                Some("body") => {
                    let schema = convert(root, &p["schema"], true, &mut Vec::new());
                    body = Some(Body {
                        required: p["required"] == true,
                        validator: compile(&name, &schema),
                    });
                    continue;
                }
                _ => continue,
            };
            // Swagger 2.0 puts the type on the parameter itself.
            let schema = match p.get("schema") {
                Some(schema) => convert(root, schema, false, &mut Vec::new()),
                None => {
                    let mut own = p.clone();
                    if let Some(o) = own.as_object_mut() {
                        for key in ["name", "in", "required", "description", "collectionFormat"] {
                            o.remove(key);
                        }
                    }
                    convert(root, &own, false, &mut Vec::new())
                }
            };
            let pname = p["name"].as_str().unwrap_or_default().to_string();
            params.insert(
                (place, pname),
                Param {
                    required: p["required"] == true,
                    kind: schema["type"].as_str().unwrap_or("string").to_string(),
                    validator: compile(&name, &schema),
                },
            );
        }
        if !swagger2 {
            if let Some(request) = op.get("requestBody").map(|b| resolve(root, b)) {
                let schema = &request["content"]["application/json"]["schema"];
                if !schema.is_null() {
                    let schema = convert(root, schema, true, &mut Vec::new());
                    body = Some(Body {
                        required: request["required"] == true,
                        validator: compile(&name, &schema),
                    });
                }
            }
        }

        let mut responses = BTreeMap::new();
        for (status, response) in op["responses"].as_object().into_iter().flatten() {
            let response = resolve(root, response);
            let schema = if swagger2 {
                &response["schema"]
            } else {
                &response["content"]["application/json"]["schema"]
            };
            let validator = (!schema.is_null())
                .then(|| compile(&name, &convert(root, schema, false, &mut Vec::new())));
            responses.insert(status.clone(), validator);
        }
        Operation {
            name,
            method: method.to_string(),
            template: template_segments,
            params,
            body,
            responses,
        }
    }

    /// The path parameters when `segments` fall under this template.
    fn match_path(&self, segments: &[&str]) -> Option<Vec<(String, String)>> {
        let mut values = Vec::new();
        let mut i = 0;
        for (t, segment) in self.template.iter().enumerate() {
            match segment {
                Segment::Literal(text) => {
                    if segments.get(i) != Some(&text.as_str()) {
                        return None;
                    }
                    i += 1;
                }
                Segment::Param { name, rest } => {
                    let last = t + 1 == self.template.len();
                    let take = if *rest && last {
                        segments.len().checked_sub(i)?
                    } else {
                        1
                    };
                    let value = segments.get(i..i + take)?.join("/");
                    if value.is_empty() {
                        return None;
                    }
                    values.push((name.clone(), value));
                    i += take;
                }
            }
        }
        (i == segments.len()).then_some(values)
    }

    /// What is wrong with a request: its path parameters, query and JSON body (`None` when it
    /// had no body). Empty when it follows the description.
    pub fn check_request(
        &self,
        path_params: &[(String, String)],
        query: &str,
        body: Option<&Value>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, value) in path_params {
            if let Some(param) = self.params.get(&(Place::Path, name.clone())) {
                param.check(&format!("path parameter {name}"), value, &mut problems);
            }
        }
        let query: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (name, value) in &query {
            match self.params.get(&(Place::Query, name.clone())) {
                Some(param) => {
                    param.check(&format!("query parameter {name}"), value, &mut problems)
                }
                None => problems.push(format!("query parameter {name} is not described")),
            }
        }
        for ((place, name), param) in &self.params {
            if *place == Place::Query && param.required && !query.iter().any(|(k, _)| k == name) {
                problems.push(format!("query parameter {name} is required"));
            }
        }
        match (&self.body, body) {
            (Some(expected), Some(body)) => {
                problems.extend(errors(&expected.validator, "body", body))
            }
            (Some(expected), None) if expected.required => {
                problems.push("a JSON body is required".to_string())
            }
            (None, Some(_)) => problems.push("the operation takes no body".to_string()),
            _ => {}
        }
        problems
    }

    /// What is wrong with an answer (see the module documentation for which are checked).
    pub fn check_response(&self, status: u16, body: &Value) -> Vec<String> {
        let described = self
            .responses
            .get(&status.to_string())
            .or_else(|| self.responses.get("default"));
        match described {
            Some(Some(validator)) => errors(validator, &format!("{status} answer"), body),
            Some(None) => Vec::new(),
            None if (200..300).contains(&status) => {
                vec![format!("status {status} is not described")]
            }
            None => Vec::new(),
        }
    }
}

impl Param {
    fn check(&self, what: &str, text: &str, problems: &mut Vec<String>) {
        let value = match self.kind.as_str() {
            "integer" | "number" | "boolean" => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
            }
            // A repeated parameter (`collectionFormat: multi`): each occurrence is one item.
            "array" => json!([text]),
            _ => Value::String(text.to_string()),
        };
        problems.extend(errors(&self.validator, what, &value));
    }
}

fn errors(validator: &Validator, what: &str, value: &Value) -> Vec<String> {
    validator
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("For '{what}{at}', {e}.")
        })
        .collect()
}

fn compile(operation: &str, schema: &Value) -> Validator {
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .should_ignore_unknown_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema of {operation} does not compile: {e}"))
}

/// Follows a `$ref` (`#/components/...` or `#/definitions/...`) to what it names.
fn resolve<'a>(root: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = root
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("unresolvable $ref {pointer}"));
            resolve(root, target)
        }
        None => value,
    }
}

/// An OpenAPI 3.0 / Swagger 2.0 schema as JSON Schema draft 4 (see the module documentation).
/// `closed`: a request body, whose objects accept only the properties described.
fn convert(root: &Value, schema: &Value, closed: bool, inlining: &mut Vec<String>) -> Value {
    if let Some(pointer) = schema.get("$ref").and_then(Value::as_str) {
        if inlining.iter().any(|p| p == pointer) {
            return json!({});
        }
        inlining.push(pointer.to_string());
        let target = root
            .pointer(pointer.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolvable $ref {pointer}"));
        let converted = convert(root, target, closed, inlining);
        inlining.pop();
        return converted;
    }
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (key, value) in object {
        let converted = match key.as_str() {
            "properties" => Value::Object(
                value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(name, s)| (name.clone(), convert(root, s, closed, inlining)))
                    .collect(),
            ),
            "items" | "not" => convert(root, value, closed, inlining),
            "additionalProperties" if value.is_object() => convert(root, value, closed, inlining),
            "allOf" => list(root, value, false, inlining),
            "anyOf" | "oneOf" => list(root, value, closed, inlining),
            // Documentation and OpenAPI-only keywords mean nothing to a validator.
            "example" | "examples" | "discriminator" | "readOnly" | "writeOnly" | "xml"
            | "externalDocs" | "deprecated" | "description" | "title" | "nullable"
            | "x-nullable" => continue,
            k if k.starts_with("x-") => continue,
            _ => value.clone(),
        };
        out.insert(key.clone(), converted);
    }
    if closed && out.contains_key("properties") && !out.contains_key("additionalProperties") {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    let nullable = schema["nullable"] == true || schema["x-nullable"] == true;
    if !nullable {
        return Value::Object(out);
    }
    if let Some(Value::Array(values)) = out.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
    match out.get("type").cloned() {
        Some(Value::String(kind)) => {
            out.insert("type".into(), json!([kind, "null"]));
            Value::Object(out)
        }
        _ => json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
    }
}

fn list(root: &Value, value: &Value, closed: bool, inlining: &mut Vec<String>) -> Value {
    Value::Array(
        value
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| convert(root, s, closed, inlining))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small OpenAPI 3.0 description with what the conversion has to get right.
    fn description() -> Description {
        let root = json!({
            "openapi": "3.0.3",
            "paths": {
                "/repos/{owner}/{repo}": {
                    "patch": {
                        "parameters": [
                            { "name": "owner", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "repo", "in": "path", "required": true, "schema": { "type": "string" } }
                        ],
                        "requestBody": { "required": true, "content": { "application/json": { "schema": {
                            "type": "object",
                            "properties": {
                                "homepage": { "type": "string", "nullable": true },
                                "name": { "type": "string" },
                                "owner": { "allOf": [{ "$ref": "#/components/schemas/who" }] }
                            }
                        } } } },
                        "responses": { "200": { "content": { "application/json": { "schema": {
                            "$ref": "#/components/schemas/who"
                        } } } } }
                    }
                },
                "/repos/{owner}/{repo}/git/refs/{ref}": {
                    "patch": {
                        "parameters": [
                            { "name": "ref", "in": "path", "required": true, "schema": { "type": "string" }, "x-multi-segment": true },
                            { "name": "force", "in": "query", "schema": { "type": "boolean" } }
                        ],
                        "responses": { "200": { "description": "ok" } }
                    }
                }
            },
            "components": { "schemas": { "who": {
                "type": "object",
                "required": ["login"],
                "properties": { "login": { "type": "string" } }
            } } }
        });
        Description::from_value(
            &root,
            &[
                ("PATCH", "/repos/{owner}/{repo}"),
                ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
            ],
        )
    }

    #[test]
    fn nullable_accepts_null_and_request_objects_are_closed() {
        let description = description();
        let (repo, params) = description
            .operation("PATCH", "/repos/o/r")
            .expect("matched");
        let check = |body: Value| repo.check_request(&params, "", Some(&body));
        assert_eq!(check(json!({ "homepage": null })), Vec::<String>::new());
        assert_eq!(check(json!({ "name": null })).len(), 1, "not nullable");
        assert_eq!(check(json!({ "nmae": "x" })).len(), 1, "an unknown field");
        // `allOf` members stay open (closing them would refuse each other's fields).
        let member = json!({ "owner": { "login": "x", "id": 1 } });
        assert_eq!(check(member), Vec::<String>::new());
        assert_eq!(
            repo.check_request(&params, "", None).len(),
            1,
            "body required"
        );
        // Answers are not closed, but must hold what is required.
        assert_eq!(
            repo.check_response(200, &json!({ "login": "x", "id": 1 })),
            Vec::<String>::new()
        );
        assert_eq!(repo.check_response(200, &json!({ "id": 1 })).len(), 1);
        assert_eq!(
            repo.check_response(201, &json!({})).len(),
            1,
            "undescribed success"
        );
        assert_eq!(repo.check_response(502, &json!({})), Vec::<String>::new());
    }

    #[test]
    fn the_longest_template_wins_and_refs_span_segments() {
        let description = description();
        let (op, params) = description
            .operation("PATCH", "/repos/o/r/git/refs/heads/feature/x")
            .expect("matched");
        assert_eq!(op.name, "PATCH /repos/{owner}/{repo}/git/refs/{ref}");
        let value = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(value("ref"), Some("heads/feature/x"));
        assert_eq!(value("repo"), Some("r"));
        assert_eq!(
            op.check_request(&params, "force=true", None),
            Vec::<String>::new()
        );
        assert_eq!(op.check_request(&params, "force=yes", None).len(), 1);
        assert_eq!(op.check_request(&params, "forse=true", None).len(), 1);
        assert!(description.operation("PATCH", "/repos/o").is_none());
        assert!(description.operation("GET", "/repos/o/r").is_none());
    }
}
