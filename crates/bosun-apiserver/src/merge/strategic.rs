//! Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
//!
//! Applies a patch the way kube-apiserver does for the built-in kinds Bosun serves
//! (Pod, Deployment, ReplicaSet, Node, Namespace, Event, Lease, Scale): maps merge
//! recursively, `null` deletes a key, lists merge according to the `patchStrategy` /
//! `patchMergeKey` tags of the Kubernetes Go types, and the patch directives
//! (`$patch`, `$retainKeys`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`)
//! are honoured and never left in the result.
//!
//! Where Kubernetes stores the raw patch value (a field absent from the object, a list
//! that is replaced), nested directives and `null`s are still resolved here: kube-apiserver
//! drops them when it decodes the result into the typed object, so the stored outcome is
//! the same.

use serde_json::{Map, Value};

use super::schema::Schema;

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

/// How a list field merges, from the Kubernetes type's patchStrategy/patchMergeKey tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No merge strategy: the patch list replaces the whole list (atomic lists).
    Replace,
    /// `patchStrategy:"merge"` with `patchMergeKey`: elements are objects matched by this key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of scalars: the lists are unioned.
    MergePrimitives,
}

impl ListStrategy {
    fn merge_key(self) -> Option<&'static str> {
        match self {
            ListStrategy::MergeByKey(key) => Some(key),
            _ => None,
        }
    }
}

/// An error in a strategic merge patch; the message names the field path where it occurred.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is not a JSON object.
    #[error("strategic merge patch must be a JSON object, got {0}")]
    PatchNotObject(&'static str),
    /// The object being patched is not a JSON object.
    #[error("the object to patch must be a JSON object, got {0}")]
    OriginalNotObject(&'static str),
    /// A `$patch` directive with a value Kubernetes does not accept at that place.
    #[error("{path}: unknown patch type: {value} in map: {map}")]
    UnknownPatchType {
        /// Field path of the map carrying the directive.
        path: String,
        /// The rejected `$patch` value.
        value: String,
        /// The map carrying the directive.
        map: String,
    },
    /// `$patch: merge` on an element of a merging list, which Kubernetes rejects.
    #[error("{path}: merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList {
        /// Field path of the list.
        path: String,
    },
    /// A `$`-prefixed key that is not a strategic merge patch directive.
    #[error("{path}: unknown strategic merge patch directive {directive:?}")]
    UnknownDirective {
        /// Field path of the map carrying the key.
        path: String,
        /// The unknown key.
        directive: String,
    },
    /// An element of a merging list lacks the list's merge key.
    #[error("{path}: map: {element} does not contain declared merge key: {key}")]
    MissingMergeKey {
        /// Field path of the list.
        path: String,
        /// The offending element.
        element: String,
        /// The merge key of the list.
        key: &'static str,
    },
    /// `$retainKeys` is not a list.
    #[error("{path}: invalid patch format of retainKeys")]
    BadRetainKeys {
        /// Field path of the map carrying the directive.
        path: String,
    },
    /// The patch sets a field that its own `$retainKeys` list does not retain.
    #[error("{path}: patch content doesn't match retainKeys list: {key:?} is not retained")]
    RetainKeysMismatch {
        /// Field path of the map carrying the directive.
        path: String,
        /// The field set by the patch but absent from `$retainKeys`.
        key: String,
    },
    /// A malformed `$setElementOrder/<field>` directive.
    #[error("{path}: invalid patch format of setElementOrder list")]
    BadSetElementOrder {
        /// Field path of the map carrying the directive.
        path: String,
    },
    /// The patch list's elements are not in the relative order of `$setElementOrder`.
    #[error(
        "{path}: the order in the patch list {patch} doesn't match $setElementOrder list {order}"
    )]
    SetElementOrderMismatch {
        /// Field path of the list.
        path: String,
        /// The patch list.
        patch: String,
        /// The `$setElementOrder` list.
        order: String,
    },
    /// A malformed `$deleteFromPrimitiveList/<field>` directive.
    #[error("{path}: invalid patch format of primitive list")]
    BadPrimitiveList {
        /// Field path of the map carrying the directive.
        path: String,
    },
    /// A merging list contains lists.
    #[error("{path}: lists of lists are not supported")]
    ListOfLists {
        /// Field path of the list.
        path: String,
    },
    /// A merging list mixes element types.
    #[error("{path}: list element types are not identical")]
    MixedListElements {
        /// Field path of the list.
        path: String,
    },
    /// A value has a different JSON type than the strategy requires.
    #[error("{path}: expected {expected}, but received {actual}")]
    TypeMismatch {
        /// Field path of the value.
        path: String,
        /// What the strategy requires.
        expected: &'static str,
        /// The JSON type found.
        actual: &'static str,
    },
}

/// How a list at `path` (the chain of object field names from the root of an object of
/// type `root`, list indices skipped, e.g. ["spec","template","spec","containers","ports"])
/// merges.
pub fn list_strategy(root: &'static Schema, path: &[&str]) -> ListStrategy {
    let Some((last, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let ty = parents.iter().fold(root, |ty, name| ty.field(name).0);
    ty.field(last).1
}

/// Applies `patch` to `original` and returns the result. Errors are for malformed patches
/// (not an object, unknown $patch value, merge key missing in a list element, ...).
pub fn strategic_merge(
    root: &'static Schema,
    original: &serde_json::Value,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, PatchError> {
    let patch = patch
        .as_object()
        .ok_or(PatchError::PatchNotObject(json_type(patch)))?;
    let original = original
        .as_object()
        .ok_or(PatchError::OriginalNotObject(json_type(original)))?;
    merge_map(Some(original.clone()), patch, root, "").map(Value::Object)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

fn child_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

/// Scalar equality as Go's `==` on decoded JSON sees it: numbers compare by value.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Merges the `patch` map into `original` (absent when the field does not exist yet).
fn merge_map(
    original: Option<Map<String, Value>>,
    patch: &Map<String, Value>,
    ty: &'static Schema,
    path: &str,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        return match directive.as_str() {
            Some("replace") => {
                let rest: Map<String, Value> = patch
                    .iter()
                    .filter(|(key, _)| key.as_str() != DIRECTIVE_MARKER)
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                merge_map(None, &rest, ty, path)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(PatchError::UnknownPatchType {
                path: shown(path),
                value: directive
                    .as_str()
                    .map_or_else(|| directive.to_string(), str::to_owned),
                map: Value::Object(patch.clone()).to_string(),
            }),
        };
    }

    let mut original = original.unwrap_or_default();
    let mut retain_keys = None;
    let mut orders: Vec<(&str, &Value)> = Vec::new();
    let mut deletions: Vec<(&str, &Value)> = Vec::new();
    let mut fields: Vec<(&str, &Value)> = Vec::new();
    for (key, value) in patch {
        if key == RETAIN_KEYS_DIRECTIVE {
            retain_keys = Some(value);
        } else if let Some(rest) = key.strip_prefix(SET_ELEMENT_ORDER_PREFIX) {
            let field = directive_field(rest)
                .ok_or_else(|| PatchError::BadSetElementOrder { path: shown(path) })?;
            orders.push((field, value));
        } else if let Some(rest) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            let field = directive_field(rest)
                .ok_or_else(|| PatchError::BadPrimitiveList { path: shown(path) })?;
            deletions.push((field, value));
        } else if key.starts_with('$') {
            return Err(PatchError::UnknownDirective {
                path: shown(path),
                directive: key.clone(),
            });
        } else {
            fields.push((key.as_str(), value));
        }
    }

    if let Some(retain_keys) = retain_keys {
        let retained: Vec<&str> = retain_keys
            .as_array()
            .ok_or_else(|| PatchError::BadRetainKeys { path: shown(path) })?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if let Some((key, _)) = fields
            .iter()
            .find(|(key, value)| !value.is_null() && !retained.contains(key))
        {
            return Err(PatchError::RetainKeysMismatch {
                path: shown(path),
                key: (*key).to_owned(),
            });
        }
        original.retain(|key, _| retained.contains(&key.as_str()));
    }

    // Lists named by $setElementOrder are merged and ordered here, and skipped below.
    let mut ordered_fields: Vec<&str> = Vec::new();
    for (field, order) in orders {
        let field_path = child_path(path, field);
        let order = order
            .as_array()
            .ok_or_else(|| PatchError::BadSetElementOrder { path: shown(path) })?;
        let (elem_ty, strategy) = ty.field(field);
        if strategy == ListStrategy::Replace {
            // Only merging lists have an order to keep; an atomic list is whatever the
            // patch sends, so the field is handled like any other below.
            continue;
        }
        let key = strategy.merge_key();
        let original_list = match original.get(field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(type_mismatch(&field_path, "list", other)),
        };
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(list)) => Some(list.as_slice()),
            Some(other) => return Err(type_mismatch(&field_path, "list", other)),
        };
        if let Some(patch_list) = patch_list {
            validate_against_order(patch_list, order, key, &field_path)?;
        }
        let merged = match (&original_list, patch_list) {
            (None, None) => continue,
            (Some(list), None) => list.clone(),
            (None, Some(patch_list)) => {
                merge_list(Vec::new(), patch_list, strategy, elem_ty, &field_path)?
            }
            (Some(list), Some(patch_list)) => {
                merge_list(list.clone(), patch_list, strategy, elem_ty, &field_path)?
            }
        };
        let (in_order, server_only) = partition(merged, order, key, &field_path)?;
        let server_order = original_list.unwrap_or_default();
        let ordered = normalize_element_order(
            in_order,
            server_only,
            order,
            &server_order,
            key,
            &field_path,
        )?;
        set_field(&mut original, field, Value::Array(ordered));
        ordered_fields.push(field);
    }

    for (field, value) in fields {
        if ordered_fields.contains(&field) {
            continue;
        }
        if value.is_null() {
            // retain keeps the remaining keys in place when maps preserve order.
            original.retain(|key, _| key != field);
            continue;
        }
        let (field_ty, strategy) = ty.field(field);
        let field_path = child_path(path, field);
        let merged = match original.get_mut(field) {
            Some(slot) => match (slot.take(), value) {
                (Value::Object(old), Value::Object(patch)) => {
                    Value::Object(merge_map(Some(old), patch, field_ty, &field_path)?)
                }
                (Value::Array(old), Value::Array(patch)) => {
                    Value::Array(merge_list(old, patch, strategy, field_ty, &field_path)?)
                }
                (_, value) => resolve_new(value, field_ty, strategy, &field_path)?,
            },
            None => resolve_new(value, field_ty, strategy, &field_path)?,
        };
        set_field(&mut original, field, merged);
    }

    for (field, value) in deletions {
        let to_delete = value
            .as_array()
            .ok_or_else(|| PatchError::BadPrimitiveList { path: shown(path) })?;
        if let ListStrategy::MergeByKey(_) = ty.field(field).1 {
            return Err(PatchError::BadPrimitiveList {
                path: child_path(path, field),
            });
        }
        // Kubernetes would store the deletion list itself when the field is absent or
        // not a list; there is nothing to delete from, so the object is left alone.
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|item| !to_delete.iter().any(|gone| loose_eq(gone, item)));
        }
    }

    Ok(original)
}

/// The field named after `$setElementOrder` / `$deleteFromPrimitiveList` ("/<field>").
fn directive_field(rest: &str) -> Option<&str> {
    rest.strip_prefix('/').filter(|field| !field.is_empty())
}

/// Replaces a field's value in place, keeping its position when maps preserve order.
fn set_field(map: &mut Map<String, Value>, field: &str, value: Value) {
    match map.get_mut(field) {
        Some(slot) => *slot = value,
        None => {
            map.insert(field.to_owned(), value);
        }
    }
}

fn type_mismatch(path: &str, expected: &'static str, actual: &Value) -> PatchError {
    PatchError::TypeMismatch {
        path: shown(path),
        expected,
        actual: json_type(actual),
    }
}

/// A patch value for a field the object does not have (or has with another JSON type):
/// it is taken as is, with its directives and `null`s resolved against nothing.
fn resolve_new(
    value: &Value,
    ty: &'static Schema,
    strategy: ListStrategy,
    path: &str,
) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => merge_map(None, map, ty, path).map(Value::Object),
        Value::Array(list) => merge_list(Vec::new(), list, strategy, ty, path).map(Value::Array),
        other => Ok(other.clone()),
    }
}

/// A list element taken from the patch without merging.
fn resolve_element(
    value: &Value,
    elem_ty: &'static Schema,
    path: &str,
) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => merge_map(None, map, elem_ty, path).map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// The merge key's value of a list element, which must be an object carrying it.
fn key_value<'a>(
    element: &'a Value,
    key: &'static str,
    path: &str,
) -> Result<&'a Value, PatchError> {
    let map = element
        .as_object()
        .ok_or_else(|| type_mismatch(path, "object", element))?;
    map.get(key).ok_or_else(|| PatchError::MissingMergeKey {
        path: shown(path),
        element: element.to_string(),
        key,
    })
}

/// Whether two elements are the same list item: by merge key, or by value for scalars.
fn same_item(
    a: &Value,
    b: &Value,
    key: Option<&'static str>,
    path: &str,
) -> Result<bool, PatchError> {
    match key {
        Some(key) => Ok(loose_eq(key_value(a, key, path)?, key_value(b, key, path)?)),
        None => Ok(loose_eq(a, b)),
    }
}

fn has_directive_marker(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|map| map.contains_key(DIRECTIVE_MARKER))
}

fn is_delete_element(value: &Value) -> bool {
    value
        .as_object()
        .and_then(|map| map.get(DIRECTIVE_MARKER))
        .and_then(Value::as_str)
        == Some("delete")
}

/// Checks that the patch list's items appear in `$setElementOrder` and in the same relative order.
fn validate_against_order(
    patch_list: &[Value],
    order: &[Value],
    key: Option<&'static str>,
    path: &str,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let items: Vec<&Value> = match key {
        Some(_) => {
            if let Some(bad) = patch_list.iter().find(|item| !item.is_object()) {
                return Err(type_mismatch(path, "object", bad));
            }
            patch_list
                .iter()
                .filter(|item| !is_delete_element(item))
                .collect()
        }
        None => patch_list.iter().collect(),
    };
    let (mut item_index, mut order_index) = (0, 0);
    while item_index < items.len() && order_index < order.len() {
        if has_directive_marker(items[item_index]) {
            item_index += 1;
            continue;
        }
        if same_item(items[item_index], &order[order_index], key, path)? {
            item_index += 1;
        }
        order_index += 1;
    }
    if item_index < items.len() && order_index >= order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            path: shown(path),
            patch: Value::Array(patch_list.to_vec()).to_string(),
            order: Value::Array(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

/// Splits `merged` into the items present in `by` and the others, keeping their order.
fn partition(
    merged: Vec<Value>,
    by: &[Value],
    key: Option<&'static str>,
    path: &str,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in merged {
        if position(by, &item, key, path)?.is_some() {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Index of the first element of `list` that is the same item as `item`.
fn position(
    list: &[Value],
    item: &Value,
    key: Option<&'static str>,
    path: &str,
) -> Result<Option<usize>, PatchError> {
    for (index, candidate) in list.iter().enumerate() {
        if same_item(candidate, item, key, path)? {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Orders the merged list: patch items by `patch_order`, server-only items by their
/// order in the live list, then interleaves the two keeping both relative orders
/// (a server-only item goes first only when the live list already had it before the
/// next patch item).
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&'static str>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, key, path)?;
    let server_only = sort_by_order(server_only, server_order, key, path)?;

    let mut result = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                match (
                    position(server_order, l, key, path)?,
                    position(server_order, r, key, path)?,
                ) {
                    (Some(li), Some(ri)) => li < ri,
                    _ => false,
                }
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        result.extend(next);
    }
    Ok(result)
}

/// Stable sort of `items` by the index of each item in `order`; items not found keep
/// their relative order after the found ones.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    key: Option<&'static str>,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    if let Some(key) = key {
        for element in items.iter().chain(order) {
            key_value(element, key, path)?;
        }
    }
    let mut indexed = Vec::with_capacity(items.len());
    for item in items {
        let index = position(order, &item, key, path)?.unwrap_or(usize::MAX);
        indexed.push((index, item));
    }
    indexed.sort_by_key(|(index, _)| *index);
    Ok(indexed.into_iter().map(|(_, item)| item).collect())
}

/// The single JSON type shared by all elements of the lists, if any element exists.
fn element_type(lists: [&[Value]; 2], path: &str) -> Result<Option<&'static str>, PatchError> {
    let mut found = None;
    for item in lists.into_iter().flatten() {
        if item.is_array() {
            return Err(PatchError::ListOfLists { path: shown(path) });
        }
        let this = json_type(item);
        match found {
            None => found = Some(this),
            Some(previous) if previous != this => {
                return Err(PatchError::MixedListElements { path: shown(path) });
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// Merges the `patch` list into `original` according to `strategy`.
fn merge_list(
    original: Vec<Value>,
    patch: &[Value],
    strategy: ListStrategy,
    elem_ty: &'static Schema,
    path: &str,
) -> Result<Vec<Value>, PatchError> {
    let key = match strategy {
        ListStrategy::Replace => {
            return patch
                .iter()
                .map(|item| resolve_element(item, elem_ty, path))
                .collect();
        }
        ListStrategy::MergePrimitives => None,
        ListStrategy::MergeByKey(key) => Some(key),
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let elements = element_type([&original, patch], path)?;

    let Some(key) = key else {
        if elements == Some("object") {
            return Err(PatchError::TypeMismatch {
                path: shown(path),
                expected: "a list of scalars (the list has no merge key)",
                actual: "a list of objects",
            });
        }
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(patch) {
            if !merged.iter().any(|seen| loose_eq(seen, item)) {
                merged.push(item.clone());
            }
        }
        let (patch_items, server_only) = partition(merged, patch, None, path)?;
        return normalize_element_order(patch_items, server_only, patch, &original, None, path);
    };

    if let Some(actual) = elements.filter(|found| *found != "object") {
        return Err(PatchError::TypeMismatch {
            path: shown(path),
            expected: "a list of objects",
            actual,
        });
    }

    // Elements carrying $patch act on the list as a whole.
    let mut original = original;
    let mut plain: Vec<&Map<String, Value>> = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(map) = item.as_object() else {
            return Err(type_mismatch(path, "object", item));
        };
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            plain.push(map);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let value = key_value(item, key, path)?;
                original.retain(|existing| {
                    !existing
                        .get(key)
                        .is_some_and(|existing_value| loose_eq(existing_value, value))
                });
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::MergeDirectiveInList { path: shown(path) });
            }
            _ => {
                return Err(PatchError::UnknownPatchType {
                    path: shown(path),
                    value: directive
                        .as_str()
                        .map_or_else(|| directive.to_string(), str::to_owned),
                    map: item.to_string(),
                });
            }
        }
    }
    if replace {
        original = plain
            .iter()
            .map(|map| merge_map(None, map, elem_ty, path).map(Value::Object))
            .collect::<Result<_, _>>()?;
        plain.clear();
    }

    let mut merged = original.clone();
    for map in &plain {
        let item = Value::Object((*map).clone());
        let value = key_value(&item, key, path)?;
        let existing = merged.iter().position(|candidate| {
            candidate
                .get(key)
                .is_some_and(|candidate_value| loose_eq(candidate_value, value))
        });
        match existing {
            Some(index) => {
                let old = match merged[index].take() {
                    Value::Object(old) => old,
                    other => return Err(type_mismatch(path, "object", &other)),
                };
                merged[index] = Value::Object(merge_map(Some(old), map, elem_ty, path)?);
            }
            None => merged.push(Value::Object(merge_map(None, map, elem_ty, path)?)),
        }
    }

    let patch_order: Vec<Value> = plain
        .iter()
        .map(|map| Value::Object((*map).clone()))
        .collect();
    let (patch_items, server_only) = partition(merged, &patch_order, Some(key), path)?;
    normalize_element_order(
        patch_items,
        server_only,
        &patch_order,
        &original,
        Some(key),
        path,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The merge schema of a served kind, through the registry; other kinds (Scale) have
    /// only their metadata's merging lists.
    fn schema(kind: &str) -> &'static Schema {
        crate::kinds::by_kind(kind)
            .map_or(&crate::merge::schema::METADATA_ONLY, |k| k.merge_schema())
    }

    fn apply(kind: &str, original: Value, patch: Value) -> Value {
        strategic_merge(schema(kind), &original, &patch).unwrap()
    }

    fn apply_err(kind: &str, original: Value, patch: Value) -> String {
        strategic_merge(schema(kind), &original, &patch)
            .unwrap_err()
            .to_string()
    }

    fn deployment(image: &str, replicas: u64, last_applied: &str) -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "web",
                "namespace": "default",
                "annotations": {
                    "deployment.kubernetes.io/revision": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": last_applied
                },
                "labels": {"app": "web"}
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
                },
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [{
                            "name": "nginx",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "resources": {},
                            "terminationMessagePath": "/dev/termination-log",
                            "terminationMessagePolicy": "File"
                        }],
                        "dnsPolicy": "ClusterFirst",
                        "restartPolicy": "Always"
                    }
                }
            },
            "status": {
                "observedGeneration": 1,
                "replicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "Progressing", "status": "True"}
                ]
            }
        })
    }

    #[test]
    fn kubectl_second_apply_changes_image_and_replicas() {
        let old_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1.14.2","name":"nginx","ports":[{"containerPort":80}]}]}}}}"#;
        let new_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"annotations":{},"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:1.16.1","name":"nginx","ports":[{"containerPort":80}]}]}}}}"#;
        let live = deployment("nginx:1.14.2", 2, old_applied);
        // The patch kubectl apply sends for this change.
        let patch = json!({
            "metadata": {"annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": format!("{new_applied}\n")
            }},
            "spec": {
                "replicas": 3,
                "template": {"spec": {
                    "$setElementOrder/containers": [{"name": "nginx"}],
                    "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]
                }}
            }
        });
        let mut expected = deployment("nginx:1.16.1", 3, &format!("{new_applied}\n"));
        // Status is not part of the patch.
        expected["status"]["replicas"] = json!(2);
        assert_eq!(apply("Deployment", live, patch), expected);
    }

    #[test]
    fn kubectl_apply_adds_a_container_port() {
        let live = json!({"spec": {"containers": [
            {"name": "app", "image": "app:1", "ports": [{"containerPort": 80, "protocol": "TCP"}]}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{
                "$setElementOrder/ports": [{"containerPort": 80}, {"containerPort": 443}],
                "name": "app",
                "ports": [{"containerPort": 443, "name": "https"}]
            }]
        }});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [{"name": "app", "image": "app:1", "ports": [
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 443, "name": "https"}
            ]}]}})
        );
    }

    #[test]
    fn kubectl_apply_removes_a_container_port() {
        let live = json!({"spec": {"template": {"spec": {"containers": [{
            "name": "app",
            "ports": [
                {"containerPort": 80, "protocol": "TCP"},
                {"containerPort": 8080, "protocol": "TCP"}
            ]
        }]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [{
                "$setElementOrder/ports": [{"containerPort": 80}],
                "name": "app",
                "ports": [{"$patch": "delete", "containerPort": 8080}]
            }]
        }}}});
        assert_eq!(
            apply("Deployment", live, patch),
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "app",
                "ports": [{"containerPort": 80, "protocol": "TCP"}]
            }]}}}})
        );
    }

    #[test]
    fn patch_without_order_puts_new_items_before_remaining_live_items() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "sidecar", "image": "s:1"}]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [
                {"name": "sidecar", "image": "s:1"}, {"name": "a"}, {"name": "b"}
            ]}})
        );
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c"}]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [
                {"name": "a"}, {"name": "b", "image": "b:2"}, {"name": "c"}
            ]}})
        );
    }

    #[test]
    fn delete_env_var_with_patch_delete() {
        let live = json!({"spec": {"containers": [{
            "name": "app",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "B", "value": "2"},
                {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ]
        }]}});
        let patch = json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "B", "$patch": "delete"}, {"name": "A", "value": "one"}]
        }]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [{
                "name": "app",
                "env": [
                    {"name": "A", "value": "one"},
                    {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
                ]
            }]}})
        );
    }

    #[test]
    fn patch_replace_on_a_map() {
        let live = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3", "gone": null}}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"name": "p", "labels": {"c": "3"}}})
        );
    }

    #[test]
    fn patch_replace_on_the_whole_object() {
        let live = json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}});
        let patch = json!({"$patch": "replace", "metadata": {"name": "l"}});
        assert_eq!(
            apply("Lease", live, patch),
            json!({"metadata": {"name": "l"}})
        );
    }

    #[test]
    fn patch_delete_on_a_map_empties_it() {
        let live = json!({"metadata": {"name": "p", "labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"name": "p", "labels": {}}})
        );
    }

    #[test]
    fn patch_replace_element_replaces_a_merging_list() {
        let live = json!({"spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b"}]}});
        let patch = json!({"spec": {"containers": [
            {"$patch": "replace"},
            {"name": "c", "image": "c"}
        ]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [{"name": "c", "image": "c"}]}})
        );
    }

    #[test]
    fn finalizers_union() {
        let live = json!({"metadata": {"name": "ns", "finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["c", "a"]}});
        assert_eq!(
            apply("Namespace", live, patch),
            json!({"metadata": {"name": "ns", "finalizers": ["c", "a", "b"]}})
        );
    }

    #[test]
    fn finalizers_union_with_set_element_order() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["a", "b", "c"],
            "finalizers": ["c"]
        }});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
    }

    #[test]
    fn delete_from_primitive_list_removes_finalizers() {
        let live = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "zz"]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"finalizers": ["a", "c"]}})
        );
        // kubectl apply sends both the order and the deletion list.
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {
            "$setElementOrder/finalizers": ["c", "a"],
            "$deleteFromPrimitiveList/finalizers": ["b"],
            "finalizers": ["c"]
        }});
        assert_eq!(
            apply("Deployment", live, patch),
            json!({"metadata": {"finalizers": ["c", "a"]}})
        );
        // Nothing to delete from: the field stays absent.
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}});
        assert_eq!(
            apply("Pod", json!({"metadata": {}}), patch),
            json!({"metadata": {}})
        );
    }

    #[test]
    fn null_deletes_a_label() {
        let live = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        let patch = json!({"metadata": {"labels": {"tier": null, "missing": null}}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"labels": {"app": "web"}}})
        );
    }

    #[test]
    fn retain_keys_clears_other_strategy_fields() {
        let live = json!({"spec": {"strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
        }}});
        let patch = json!({"spec": {"strategy": {
            "$retainKeys": ["type"],
            "rollingUpdate": null,
            "type": "Recreate"
        }}});
        assert_eq!(
            apply("Deployment", live, patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
    }

    #[test]
    fn retain_keys_in_volume_elements() {
        let live = json!({"spec": {"volumes": [
            {"name": "data", "emptyDir": {}},
            {"name": "cfg", "configMap": {"name": "c"}}
        ]}});
        let patch = json!({"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "cfg"}],
            "volumes": [{
                "$retainKeys": ["hostPath", "name"],
                "emptyDir": null,
                "hostPath": {"path": "/data"},
                "name": "data"
            }]
        }});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"volumes": [
                {"name": "data", "hostPath": {"path": "/data"}},
                {"name": "cfg", "configMap": {"name": "c"}}
            ]}})
        );
    }

    #[test]
    fn set_element_order_alone_reorders() {
        let live = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
        }});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}})
        );
    }

    #[test]
    fn node_status_conditions_merge_by_type() {
        let live = json!({"status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}
            ],
            "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
        }});
        let patch = json!({"status": {
            "$setElementOrder/conditions": [{"type": "MemoryPressure"}, {"type": "Ready"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
        }});
        assert_eq!(
            apply("Node", live, patch),
            json!({"status": {
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}
                ],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]
            }})
        );
    }

    #[test]
    fn pod_status_pod_ips_merge_by_ip() {
        let live = json!({"status": {"podIPs": [{"ip": "10.1.0.5"}], "phase": "Pending"}});
        let patch = json!({"status": {"phase": "Running", "podIPs": [{"ip": "fd00::5"}]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"status": {"phase": "Running", "podIPs": [{"ip": "fd00::5"}, {"ip": "10.1.0.5"}]}})
        );
    }

    #[test]
    fn atomic_lists_are_replaced() {
        let live = json!({"spec": {
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["x", "y"]}]
        }});
        let patch = json!({"spec": {
            "tolerations": [{"key": "b", "operator": "Exists"}],
            "containers": [{"name": "app", "args": ["z"]}]
        }});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {
                "tolerations": [{"key": "b", "operator": "Exists"}],
                "containers": [{"name": "app", "args": ["z"]}]
            }})
        );
        // Node taints and lists of kinds without merge tags replace too.
        let live = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}});
        let patch = json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}});
        assert_eq!(
            apply("Node", live, patch),
            json!({"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}})
        );
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b"}]}});
        assert_eq!(
            apply("Widget", live, patch),
            json!({"spec": {"containers": [{"name": "b"}]}})
        );
    }

    #[test]
    fn new_fields_have_their_directives_resolved() {
        let live = json!({"metadata": {"name": "p"}});
        let patch = json!({
            "metadata": {"labels": {"a": "1", "b": null}},
            "spec": {
                "$setElementOrder/containers": [{"name": "x"}],
                "containers": [{"name": "x", "env": [{"name": "E", "$patch": "delete"}, {"name": "F", "value": "f"}]}]
            }
        });
        assert_eq!(
            apply("Pod", live, patch),
            json!({
                "metadata": {"name": "p", "labels": {"a": "1"}},
                "spec": {"containers": [{"name": "x", "env": [{"name": "F", "value": "f"}]}]}
            })
        );
    }

    #[test]
    fn empty_patch_list_leaves_merging_lists_alone() {
        let live =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"metadata": {"finalizers": []}, "spec": {"containers": []}});
        assert_eq!(apply("Pod", live.clone(), patch), live);
        // An atomic list is replaced, even by an empty one, and an order for it is ignored.
        let live = json!({"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "a"}]}});
        let patch =
            json!({"spec": {"$setElementOrder/tolerations": [{"key": "b"}], "tolerations": []}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"spec": {"tolerations": [], "containers": [{"name": "a"}]}})
        );
    }

    #[test]
    fn type_change_replaces_the_value() {
        let live = json!({"spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}}}});
        let patch = json!({"spec": {"replicas": "2", "selector": "x"}});
        assert_eq!(
            apply("ReplicaSet", live, patch),
            json!({"spec": {"replicas": "2", "selector": "x"}})
        );
    }

    #[test]
    fn owner_references_merge_by_uid_and_numbers_match_by_value() {
        let live = json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet"}]}});
        let patch = json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}});
        assert_eq!(
            apply("Pod", live, patch),
            json!({"metadata": {"ownerReferences": [{"uid": "u1", "kind": "ReplicaSet", "controller": true}]}})
        );
        let live =
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80}]}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "name": "http"}]}]}});
        assert_eq!(
            apply("Pod", live, patch),
            // Same element; the patch's value wins as for any scalar field.
            json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80.0, "name": "http"}]}]}})
        );
    }

    #[test]
    fn scale_is_a_plain_map() {
        let live = json!({"kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        let patch = json!({"spec": {"replicas": 5}});
        assert_eq!(
            apply("Scale", live, patch),
            json!({"kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 5}, "status": {"replicas": 2}})
        );
    }

    #[test]
    fn list_strategy_table() {
        use ListStrategy::*;
        let cases: &[(&str, &[&str], ListStrategy)] = &[
            ("Pod", &["metadata", "finalizers"], MergePrimitives),
            ("Lease", &["metadata", "finalizers"], MergePrimitives),
            ("Event", &["metadata", "ownerReferences"], MergeByKey("uid")),
            ("Pod", &["metadata", "managedFields"], Replace),
            ("Pod", &["spec", "containers"], MergeByKey("name")),
            ("Pod", &["spec", "initContainers"], MergeByKey("name")),
            ("Pod", &["spec", "ephemeralContainers"], MergeByKey("name")),
            ("Pod", &["spec", "volumes"], MergeByKey("name")),
            ("Pod", &["spec", "imagePullSecrets"], MergeByKey("name")),
            ("Pod", &["spec", "hostAliases"], MergeByKey("ip")),
            (
                "Pod",
                &["spec", "topologySpreadConstraints"],
                MergeByKey("topologyKey"),
            ),
            ("Pod", &["spec", "resourceClaims"], MergeByKey("name")),
            ("Pod", &["spec", "schedulingGates"], MergeByKey("name")),
            ("Pod", &["spec", "tolerations"], Replace),
            ("Pod", &["spec", "readinessGates"], Replace),
            (
                "Pod",
                &["spec", "containers", "ports"],
                MergeByKey("containerPort"),
            ),
            ("Pod", &["spec", "containers", "env"], MergeByKey("name")),
            (
                "Pod",
                &["spec", "initContainers", "volumeMounts"],
                MergeByKey("mountPath"),
            ),
            (
                "Pod",
                &["spec", "ephemeralContainers", "volumeDevices"],
                MergeByKey("devicePath"),
            ),
            ("Pod", &["spec", "containers", "envFrom"], Replace),
            ("Pod", &["spec", "containers", "args"], Replace),
            ("Pod", &["spec", "containers", "resizePolicy"], Replace),
            ("Pod", &["status", "conditions"], MergeByKey("type")),
            ("Pod", &["status", "podIPs"], MergeByKey("ip")),
            ("Pod", &["status", "hostIPs"], MergeByKey("ip")),
            (
                "Pod",
                &["status", "resourceClaimStatuses"],
                MergeByKey("name"),
            ),
            ("Pod", &["status", "containerStatuses"], Replace),
            (
                "Pod",
                &["status", "containerStatuses", "volumeMounts"],
                MergeByKey("mountPath"),
            ),
            (
                "Deployment",
                &["spec", "template", "spec", "containers", "ports"],
                MergeByKey("containerPort"),
            ),
            (
                "Deployment",
                &["spec", "template", "metadata", "finalizers"],
                MergePrimitives,
            ),
            ("Deployment", &["status", "conditions"], MergeByKey("type")),
            (
                "ReplicaSet",
                &["spec", "template", "spec", "volumes"],
                MergeByKey("name"),
            ),
            ("ReplicaSet", &["status", "conditions"], MergeByKey("type")),
            ("Node", &["spec", "podCIDRs"], MergePrimitives),
            ("Node", &["spec", "taints"], Replace),
            ("Node", &["status", "conditions"], MergeByKey("type")),
            ("Node", &["status", "addresses"], MergeByKey("type")),
            ("Node", &["status", "images"], Replace),
            ("Namespace", &["spec", "finalizers"], Replace),
            ("Namespace", &["status", "conditions"], MergeByKey("type")),
            ("Pod", &["spec", "template", "spec", "containers"], Replace),
            ("Scale", &["spec", "replicas"], Replace),
            ("Pod", &[], Replace),
        ];
        for (kind, path, expected) in cases {
            assert_eq!(
                list_strategy(schema(kind), path),
                *expected,
                "{kind} {path:?}"
            );
        }
    }

    #[test]
    fn error_patch_not_an_object() {
        assert_eq!(
            apply_err("Pod", json!({}), json!([1])),
            "strategic merge patch must be a JSON object, got list"
        );
        assert_eq!(
            apply_err("Pod", json!({}), json!(null)),
            "strategic merge patch must be a JSON object, got null"
        );
        assert_eq!(
            apply_err("Pod", json!("x"), json!({})),
            "the object to patch must be a JSON object, got string"
        );
    }

    #[test]
    fn error_unknown_patch_value() {
        assert_eq!(
            apply_err(
                "Pod",
                json!({}),
                json!({"metadata": {"labels": {"$patch": "nuke"}}})
            ),
            r#"metadata.labels: unknown patch type: nuke in map: {"$patch":"nuke"}"#
        );
        // Kubernetes accepts only replace and delete in a map.
        assert_eq!(
            apply_err("Pod", json!({}), json!({"$patch": "merge"})),
            r#"<root>: unknown patch type: merge in map: {"$patch":"merge"}"#
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}})
            ),
            "spec.containers: merging lists cannot yet be specified in the patch"
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"$patch": "drop", "name": "a"}]}})
            ),
            r#"spec.containers: unknown patch type: drop in map: {"$patch":"drop","name":"a"}"#
        );
    }

    #[test]
    fn error_merge_key_missing() {
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}]}}),
                json!({"spec": {"containers": [{"image": "x"}]}})
            ),
            r#"spec.containers: map: {"image":"x"} does not contain declared merge key: name"#
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {"containers": [{"name": "a", "env": [{"name": "X"}]}]}}),
                json!({"spec": {"containers": [{"name": "a", "env": [{"$patch": "delete"}]}]}})
            ),
            r#"spec.containers.env: map: {"$patch":"delete"} does not contain declared merge key: name"#
        );
    }

    #[test]
    fn error_unknown_directive() {
        assert_eq!(
            apply_err("Pod", json!({}), json!({"spec": {"$foo": 1}})),
            r#"spec: unknown strategic merge patch directive "$foo""#
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({}),
                json!({"metadata": {"$setElementOrder": []}})
            ),
            "metadata: invalid patch format of setElementOrder list"
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}})
            ),
            "metadata: invalid patch format of primitive list"
        );
    }

    #[test]
    fn error_retain_keys() {
        assert_eq!(
            apply_err(
                "Deployment",
                json!({}),
                json!({"spec": {"strategy": {"$retainKeys": "type"}}})
            ),
            "spec.strategy: invalid patch format of retainKeys"
        );
        assert_eq!(
            apply_err(
                "Deployment",
                json!({}),
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "RollingUpdate", "rollingUpdate": {}}}})
            ),
            r#"spec.strategy: patch content doesn't match retainKeys list: "rollingUpdate" is not retained"#
        );
    }

    #[test]
    fn error_set_element_order_mismatch() {
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {
                    "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "b"}, {"name": "a"}]
                }})
            ),
            r#"spec.containers: the order in the patch list [{"name":"b"},{"name":"a"}] doesn't match $setElementOrder list [{"name":"a"},{"name":"b"}]"#
        );
    }

    #[test]
    fn error_bad_list_elements() {
        assert_eq!(
            apply_err(
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [["b"]]}})
            ),
            "metadata.finalizers: lists of lists are not supported"
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": [1]}})
            ),
            "metadata.finalizers: list element types are not identical"
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"spec": {}}),
                json!({"spec": {"containers": ["nginx"]}})
            ),
            "spec.containers: expected a list of objects, but received string"
        );
        assert_eq!(
            apply_err(
                "Pod",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/ownerReferences": ["a"]}})
            ),
            "metadata.ownerReferences: invalid patch format of primitive list"
        );
    }
}
