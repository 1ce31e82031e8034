//! Deployments: the status is the controller's, so a create drops what the client sent.

use bosun_api::field::FieldError;
use bosun_api::resources::{DEPLOYMENTS, Resource};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1 as api;
use k8s_pb::api::apps::v1 as pb;
use prost::Message;
use serde_json::Value;

use super::Strategy;
use super::validation as v;
use crate::encoding::protobuf::{self, DecodeError, Obj};
use crate::encoding::table::{self, Column};
use crate::merge::schema::{Schema, WORKLOAD};

/// The deployment kind.
#[derive(Debug)]
pub struct Deployment;

impl Strategy for Deployment {
    type Object = api::Deployment;

    fn resource(&self) -> &'static Resource {
        &DEPLOYMENTS
    }

    fn default(&self, obj: &mut api::Deployment) {
        v::default_deployment(obj);
    }

    fn validate(&self, obj: &api::Deployment) -> Vec<FieldError> {
        v::validate_deployment(obj)
    }

    fn validate_update(&self, new: &api::Deployment, old: &api::Deployment) -> Vec<FieldError> {
        v::validate_deployment_update(new, old)
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        super::drop_status(obj);
    }

    /// `deploymentStatusStrategy.PrepareForUpdate`: a status write keeps everything it sends
    /// but the spec and the labels. The deployment controller records the deployment's
    /// `deployment.kubernetes.io/revision` annotation this way.
    fn prepare_for_update(&self, new: &mut Value, old: &Value, part: super::Part) {
        match part {
            super::Part::Status => {
                if let Some(o) = new.as_object_mut() {
                    match old.get("spec") {
                        Some(spec) => o.insert("spec".into(), spec.clone()),
                        None => o.remove("spec"),
                    };
                }
                let labels = old.pointer("/metadata/labels").cloned();
                if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                    match labels {
                        Some(l) => m.insert("labels".into(), l),
                        None => m.remove("labels"),
                    };
                }
            }
            part => super::reset_status(&DEPLOYMENTS, new, old, part),
        }
    }

    fn table_columns(&self) -> &'static [Column] {
        &table::DEPLOYMENT_COLUMNS
    }

    fn table_cells(&self, obj: &Value, now: Timestamp) -> Vec<Value> {
        table::deployment_cells(obj, now)
    }

    fn merge_schema(&self) -> &'static Schema {
        &WORKLOAD
    }

    fn decode_protobuf(&self, head: Obj, raw: &[u8]) -> Result<Value, DecodeError> {
        protobuf::deployment(head, &pb::Deployment::decode(raw)?)
    }
}
