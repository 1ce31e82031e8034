//! Encodings of objects besides their JSON: Kubernetes protobuf request bodies turned into
//! JSON ([`protobuf`]), and the `Table` form `kubectl get` asks for ([`table`]).

pub mod protobuf;
pub mod table;
