//! Taints and tolerations: `Toleration.ToleratesTaint` and `FindMatchingUntoleratedTaint` of
//! k8s.io/api/core/v1 and component-helpers/scheduling/corev1.

/// A taint's effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
    /// An effect the API does not define (the apiserver rejects them); tolerated only by a
    /// toleration for every effect.
    Unknown,
}

impl Effect {
    fn parse(s: &str) -> Effect {
        match s {
            "NoSchedule" => Effect::NoSchedule,
            "PreferNoSchedule" => Effect::PreferNoSchedule,
            "NoExecute" => Effect::NoExecute,
            _ => Effect::Unknown,
        }
    }

    /// `helper.DoNotScheduleTaintsFilterFunc`: the effects the TaintToleration filter enforces.
    pub(crate) fn blocks_scheduling(self) -> bool {
        matches!(self, Effect::NoSchedule | Effect::NoExecute)
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Taint {
    pub(crate) key: Box<str>,
    pub(crate) value: Box<str>,
    pub(crate) effect: Effect,
}

impl Taint {
    pub(crate) fn from_api(t: &k8s_openapi::api::core::v1::Taint) -> Taint {
        Taint {
            key: t.key.as_str().into(),
            value: t.value.as_deref().unwrap_or_default().into(),
            effect: Effect::parse(&t.effect),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Equal,
    Exists,
    /// Not an operator the API defines: tolerates nothing.
    Unknown,
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Toleration {
    key: Box<str>,
    operator: Operator,
    value: Box<str>,
    /// None tolerates every effect.
    effect: Option<Effect>,
}

impl Toleration {
    pub(crate) fn from_api(t: &k8s_openapi::api::core::v1::Toleration) -> Toleration {
        Toleration {
            key: t.key.as_deref().unwrap_or_default().into(),
            operator: match t.operator.as_deref().unwrap_or_default() {
                "" | "Equal" => Operator::Equal,
                "Exists" => Operator::Exists,
                _ => Operator::Unknown,
            },
            value: t.value.as_deref().unwrap_or_default().into(),
            effect: t
                .effect
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(Effect::parse),
        }
    }

    /// `Toleration.ToleratesTaint`.
    pub(crate) fn tolerates(&self, key: &str, value: &str, effect: Effect) -> bool {
        if self.effect.is_some_and(|e| e != effect) {
            return false;
        }
        if !self.key.is_empty() && &*self.key != key {
            return false;
        }
        match self.operator {
            Operator::Equal => &*self.value == value,
            Operator::Exists => true,
            Operator::Unknown => false,
        }
    }

    /// Whether this toleration is considered for PreferNoSchedule scoring
    /// (`getAllTolerationPreferNoSchedule`: an empty effect or PreferNoSchedule).
    pub(crate) fn applies_to_prefer_no_schedule(&self) -> bool {
        matches!(self.effect, None | Some(Effect::PreferNoSchedule))
    }
}

/// `TolerationsTolerateTaint`.
pub(crate) fn tolerated(
    tolerations: &[Toleration],
    key: &str,
    value: &str,
    effect: Effect,
) -> bool {
    tolerations.iter().any(|t| t.tolerates(key, value, effect))
}

/// `FindMatchingUntoleratedTaint` with the NoSchedule/NoExecute filter: whether some such taint
/// is not tolerated.
pub(crate) fn has_untolerated_blocking_taint(taints: &[Taint], tolerations: &[Toleration]) -> bool {
    taints
        .iter()
        .filter(|t| t.effect.blocks_scheduling())
        .any(|t| !tolerated(tolerations, &t.key, &t.value, t.effect))
}

/// `countIntolerableTaintsPreferNoSchedule`: `tolerations` are already those that apply to
/// PreferNoSchedule.
pub(crate) fn count_intolerable_prefer_no_schedule(
    taints: &[Taint],
    tolerations: &[Toleration],
) -> i64 {
    let n = taints
        .iter()
        .filter(|t| t.effect == Effect::PreferNoSchedule)
        .filter(|t| !tolerated(tolerations, &t.key, &t.value, t.effect))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1 as api;

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration::from_api(&api::Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            toleration_seconds: None,
        })
    }

    // Cases from k8s.io/api/core/v1 TestTolerationToleratesTaint.
    #[test]
    fn toleration_matches_taint() {
        let cases = [
            (
                tol("foo", "Equal", "bar", "NoSchedule"),
                ("foo", "bar", Effect::NoSchedule),
                true,
            ),
            (
                tol("foo", "Equal", "bar", ""),
                ("foo", "bar", Effect::NoExecute),
                true,
            ),
            (
                tol("foo", "Equal", "bar", "NoSchedule"),
                ("foo", "bar", Effect::NoExecute),
                false,
            ),
            (
                tol("foo", "Equal", "bar", "NoSchedule"),
                ("foo", "baz", Effect::NoSchedule),
                false,
            ),
            (
                tol("foo", "", "bar", "NoSchedule"),
                ("foo", "bar", Effect::NoSchedule),
                true,
            ),
            (
                tol("foo", "Exists", "", "NoSchedule"),
                ("foo", "anything", Effect::NoSchedule),
                true,
            ),
            (
                tol("", "Exists", "", ""),
                ("any", "thing", Effect::NoExecute),
                true,
            ),
            (
                tol("bar", "Exists", "", "NoSchedule"),
                ("foo", "bar", Effect::NoSchedule),
                false,
            ),
            (
                tol("foo", "Lt", "1", "NoSchedule"),
                ("foo", "1", Effect::NoSchedule),
                false,
            ),
        ];
        for (t, (k, v, e), want) in cases {
            assert_eq!(t.tolerates(k, v, e), want, "{t:?} vs {k}={v}:{e:?}");
        }
    }
}
