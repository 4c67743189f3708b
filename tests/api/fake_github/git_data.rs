//! The fake's Git database endpoints: blobs, trees (with `base_tree`, deletions and truncated
//! listings), commits and references.

use super::*;

pub(super) fn create_blob(repo: &mut Repo, api: &str, json: &Value) -> Reply {
    let content = json["content"]
        .as_str()
        .ok_or_else(|| validation("Invalid request.", "content", "content is required"))?;
    let bytes = match json["encoding"].as_str().unwrap_or("utf-8") {
        "base64" => {
            let cleaned: String = content.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|_| error(422, "content is not valid Base64"))?
        }
        "utf-8" | "utf8" => content.as_bytes().to_vec(),
        other => return Err(error(422, &format!("encoding {other} is not supported"))),
    };
    let sha = repo.put(Object::Blob(bytes));
    Ok(reply(
        201,
        json!({ "url": format!("{api}/git/blobs/{sha}"), "sha": sha }),
    ))
}

pub(super) fn get_blob(repo: &Repo, api: &str, sha: &str) -> Reply {
    let Some(Object::Blob(content)) = repo.objects.get(sha) else {
        return Err(not_found());
    };
    // GitHub wraps base64 content at 60 characters.
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Ok(reply(
        200,
        json!({
            "content": format!("{}\n", wrapped.join("\n")),
            "encoding": "base64",
            "url": format!("{api}/git/blobs/{sha}"),
            "sha": sha,
            "size": content.len(),
            "node_id": node_id("Blob", sha),
        }),
    ))
}

pub(super) fn create_tree(repo: &mut Repo, api: &str, json: &Value) -> Reply {
    let invalid = |why: &str| validation("Invalid tree info", "tree", why);
    let items = json["tree"]
        .as_array()
        .ok_or_else(|| invalid("tree is required"))?;
    let mut files = match json["base_tree"].as_str() {
        Some(base) => {
            if repo.tree(base).is_none() {
                return Err(invalid("base_tree is not a valid tree"));
            }
            repo.flat_tree(base)
        }
        None => BTreeMap::new(),
    };
    let mut upserts = Vec::new();
    for item in items {
        let path = item["path"].as_str().unwrap_or_default();
        let mode = item["mode"].as_str().unwrap_or_default();
        let kind = item["type"].as_str().unwrap_or_default();
        if !valid_path(path) {
            return Err(invalid(&format!(
                "tree.path {path:?} contains a malformed path component"
            )));
        }
        let expected = match mode {
            "100644" | "100755" | "120000" => "blob",
            "040000" => "tree",
            "160000" => "commit",
            _ => return Err(invalid(&format!("tree.mode {mode:?} is not a valid mode"))),
        };
        if kind != expected {
            return Err(invalid(&format!(
                "tree.type {kind:?} does not match mode {mode}"
            )));
        }
        let sha = match (item.get("sha"), item["content"].as_str()) {
            (Some(Value::String(_)), Some(_)) => {
                return Err(invalid(
                    "only one of tree.sha and tree.content may be given",
                ))
            }
            (Some(Value::String(sha)), None) => Some(sha.clone()),
            (_, Some(content)) => Some(repo.put(Object::Blob(content.as_bytes().to_vec()))),
            (Some(Value::Null), None) => None,
            (_, None) => return Err(invalid("tree.sha or tree.content is required")),
        };
        match sha {
            // A null sha deletes the path (and everything below it).
            None => {
                let dir = format!("{path}/");
                files.retain(|p, _| p != path && !p.starts_with(&dir));
            }
            Some(sha) => upserts.push((path.to_string(), mode.to_string(), sha)),
        }
    }
    for (path, mode, sha) in upserts {
        match (mode.as_str(), repo.objects.get(&sha)) {
            ("040000", Some(Object::Tree(_))) => {
                let dir = format!("{path}/");
                files.retain(|p, _| !p.starts_with(&dir));
                for (inner, entry) in repo.flat_tree(&sha) {
                    files.insert(format!("{dir}{inner}"), entry);
                }
            }
            ("160000", _) => {
                files.insert(path, (mode, sha));
            }
            (_, Some(Object::Blob(_))) => {
                files.insert(path, (mode, sha));
            }
            _ => {
                return Err(invalid(&format!(
                    "tree.sha {sha} is not a valid {mode} object"
                )))
            }
        }
    }
    for path in files.keys() {
        let dir = format!("{path}/");
        if files
            .range(dir.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&dir))
        {
            return Err(invalid(&format!("{path} is both a file and a directory")));
        }
    }
    let sha = repo.write_tree(&files);
    let body = tree_json(repo, api, &sha, false);
    Ok(reply(201, body))
}

pub(super) fn get_tree(
    repo: &Repo,
    api: &str,
    sha: &str,
    limit: Option<usize>,
    recursive: bool,
) -> Reply {
    if repo.tree(sha).is_none() {
        return Err(not_found());
    }
    let mut listing = tree_json(repo, api, sha, recursive);
    if let (Some(limit), Some(items)) = (limit, listing["tree"].as_array_mut()) {
        if items.len() > limit {
            items.truncate(limit);
            listing["truncated"] = json!(true);
        }
    }
    Ok(reply(200, listing))
}

fn tree_json(repo: &Repo, api: &str, sha: &str, recursive: bool) -> Value {
    let mut items = Vec::new();
    let mut add = |path: String, e: &Entry| {
        let (kind, mode) = match e.mode.as_str() {
            "40000" => ("tree", "040000"),
            "160000" => ("commit", "160000"),
            other => ("blob", other),
        };
        let mut item = json!({ "path": path, "mode": mode, "type": kind, "sha": e.sha });
        if let Some(Object::Blob(content)) = repo.objects.get(&e.sha) {
            item["size"] = json!(content.len());
            item["url"] = json!(format!("{api}/git/blobs/{}", e.sha));
        } else if kind == "tree" {
            item["url"] = json!(format!("{api}/git/trees/{}", e.sha));
        }
        items.push(item);
    };
    if recursive {
        repo.walk(sha, "", &mut add);
    } else {
        for e in repo.tree(sha).cloned().unwrap_or_default() {
            add(e.name.clone(), &e);
        }
    }
    json!({
        "sha": sha,
        "url": format!("{api}/git/trees/{sha}"),
        "tree": items,
        "truncated": false,
    })
}

pub(super) fn create_commit(repo: &mut Repo, base: &str, caller: &Caller, json: &Value) -> Reply {
    let message = json["message"]
        .as_str()
        .ok_or_else(|| validation("Invalid request.", "message", "message is required"))?;
    let tree = json["tree"].as_str().unwrap_or_default();
    if repo.tree(tree).is_none() {
        return Err(error(422, "Tree SHA does not exist"));
    }
    let mut parents = Vec::new();
    for p in json["parents"].as_array().cloned().unwrap_or_default() {
        let p = p.as_str().unwrap_or_default().to_string();
        if repo.commit(&p).is_none() {
            return Err(error(
                422,
                "Parent SHA does not exist or is not a commit object",
            ));
        }
        parents.push(p);
    }
    let author = person(&json["author"]).unwrap_or_else(|| default_person(caller));
    let committer = person(&json["committer"]).unwrap_or_else(|| author.clone());
    let commit = Commit {
        tree: tree.to_string(),
        parents,
        message: message.to_string(),
        author,
        committer,
    };
    let sha = repo.put(Object::Commit(commit.clone()));
    Ok(reply(201, commit_json(repo, base, &sha, &commit)))
}

pub(super) fn create_ref(repo: &mut Repo, api: &str, json: &Value) -> Reply {
    let refname = json["ref"].as_str().unwrap_or_default().to_string();
    let sha = json["sha"].as_str().unwrap_or_default().to_string();
    if !refname.starts_with("refs/") || refname.matches('/').count() < 2 {
        return Err(error(
            422,
            "Reference name is invalid: must start with 'refs' and have at least two slashes",
        ));
    }
    if !repo.objects.contains_key(&sha) {
        return Err(error(422, "Object does not exist"));
    }
    if repo.refs.contains_key(&refname) {
        return Err(error(422, "Reference already exists"));
    }
    repo.refs.insert(refname.clone(), sha.clone());
    Ok(reply(201, ref_json(api, &refname, &sha)))
}

pub(super) fn update_ref(repo: &mut Repo, api: &str, refname: &str, json: &Value) -> Reply {
    let sha = json["sha"].as_str().unwrap_or_default().to_string();
    let force = json["force"].as_bool().unwrap_or(false);
    let Some(current) = repo.refs.get(refname).cloned() else {
        return Err(error(422, "Reference does not exist"));
    };
    if repo.commit(&sha).is_none() {
        return Err(error(422, "Object does not exist"));
    }
    if !force && !repo.is_ancestor(&current, &sha) {
        return Err(error(422, "Update is not a fast forward"));
    }
    repo.refs.insert(refname.to_string(), sha.clone());
    Ok(reply(200, ref_json(api, refname, &sha)))
}
