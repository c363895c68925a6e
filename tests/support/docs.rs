//! The SQL of the documents (README.md, docs/operations.md), as operators run it: each ```sql
//! block with psql's `:'name'`, `:"name"` and `:name` variables filled in.

/// Every ```sql block of the documents but those about the roles named (`:"reader"`), with
/// psql's variables filled in.
pub fn documented_sql_blocks(values: &[(&str, String)], but_roles: &[&str]) -> Vec<String> {
    blocks()
        .into_iter()
        .filter(|block| {
            !but_roles
                .iter()
                .any(|role| block.contains(&format!(":\"{role}\"")))
        })
        .map(|block| fill(block, values))
        .collect()
}

/// The documents' SQL block that contains `text`, filled in.
pub fn documented_sql(text: &str, values: &[(&str, String)]) -> String {
    let block = blocks()
        .into_iter()
        .find(|block| block.contains(text))
        .unwrap_or_else(|| panic!("no documented SQL block contains {text:?}"));
    fill(block, values)
}

fn blocks() -> Vec<String> {
    let documents = [
        include_str!("../../README.md"),
        include_str!("../../docs/operations.md"),
    ];
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in documents.iter().flat_map(|document| document.lines()) {
        match (&mut current, line.trim_start()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn fill(mut block: String, values: &[(&str, String)]) -> String {
    for (name, value) in values {
        block = block.replace(&format!(":'{name}'"), &format!("'{value}'"));
        block = block.replace(&format!(":\"{name}\""), &format!("\"{value}\""));
        block = block.replace(&format!(":{name}"), value);
    }
    assert!(
        !block.contains(":'") && !block.contains(":\""),
        "an unfilled psql variable in:\n{block}"
    );
    block
}
