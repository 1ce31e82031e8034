//! `controller.ComputeHash`: the pod-template-hash label and the `<deployment>-<hash>` name
//! of a deployment's ReplicaSets.
//!
//! Kubernetes hashes the Go struct of the template (printed by go-spew) with FNV-1a 32, adds
//! the collision count as 8 little-endian bytes, and encodes the decimal digits of the sum
//! with `rand.SafeEncodeString` (no vowels, no confusable characters). Bosun hashes the
//! template's JSON instead of a Go dump, so its hashes have the same shape (up to 10
//! characters of `bcdfghjklmnpqrstvwxz2456789`) but not Kubernetes' values. What matters is
//! kept: the hash is a pure function of the template and the collision count, and a new
//! collision count gives a new name.

use k8s_openapi::api::core::v1::PodTemplateSpec;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(mut h: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// `rand.SafeEncodeString`: each byte mapped onto a 27-letter alphabet without vowels or
/// look-alikes, so the result can never spell words or be misread.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The hash of a pod template and the deployment's collision count.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serializing a k8s-openapi struct cannot fail: maps have string keys.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv1a(FNV_OFFSET, &json);
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv1a(h, &bytes);
    }
    safe_encode(&h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn template(label: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), label.to_string())].into()),
                ..Default::default()
            }),
            spec: None,
        }
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn safe_encode_uses_the_safe_alphabet() {
        // 'a' = 97 = 3 * 27 + 16 -> ALPHANUMS[16] = 'v'.
        assert_eq!(safe_encode("abc"), "vwx");
        assert_eq!(safe_encode("aaaaaaaa"), "vvvvvvvv");
        assert!(
            safe_encode("0123456789")
                .chars()
                .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c))
        );
    }

    // hash_test.go TestPodTemplateSpecHash: hashes are stable, and differ by template and
    // by collision count.
    #[test]
    fn hash_depends_on_template_and_collision_count() {
        let a = compute_hash(&template("a"), None);
        assert_eq!(a, compute_hash(&template("a"), None));
        assert_ne!(a, compute_hash(&template("b"), None));
        assert_ne!(a, compute_hash(&template("a"), Some(1)));
        assert_ne!(
            compute_hash(&template("a"), Some(1)),
            compute_hash(&template("a"), Some(2))
        );
        assert!(a.len() <= 10 && !a.is_empty());
    }
}
