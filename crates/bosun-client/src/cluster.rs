//! Cluster membership.

use bosun_proto::etcdserverpb as pb;

use crate::client::{Client, Idempotency};
use crate::error::Error;

impl Client {
    /// The cluster's members, as the current endpoint knows them. Retried.
    pub async fn member_list(&self) -> Result<pb::MemberListResponse, Error> {
        self.member_list_raw(pb::MemberListRequest {
            linearizable: false,
        })
        .await
    }

    /// Sends a `MemberListRequest` as is (e.g. `linearizable: true`). Retried.
    pub async fn member_list_raw(
        &self,
        req: pb::MemberListRequest,
    ) -> Result<pb::MemberListResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::Idempotent, |ch| async move {
            inner
                .cluster(ch)
                .member_list(req)
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Adds a member (as a learner when `is_learner`). Not retried unless provably not
    /// applied.
    pub async fn member_add(
        &self,
        peer_urls: impl IntoIterator<Item = impl Into<String>>,
        is_learner: bool,
    ) -> Result<pb::MemberAddResponse, Error> {
        let req = pb::MemberAddRequest {
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
            is_learner,
        };
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| {
            let req = req.clone();
            async move {
                inner
                    .cluster(ch)
                    .member_add(req)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }

    /// Removes a member. Not retried unless provably not applied.
    pub async fn member_remove(&self, id: u64) -> Result<pb::MemberRemoveResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .cluster(ch)
                .member_remove(pb::MemberRemoveRequest { id })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Promotes a learner to a voting member. Not retried unless provably not applied.
    pub async fn member_promote(&self, id: u64) -> Result<pb::MemberPromoteResponse, Error> {
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| async move {
            inner
                .cluster(ch)
                .member_promote(pb::MemberPromoteRequest { id })
                .await
                .map(tonic::Response::into_inner)
        })
        .await
    }

    /// Replaces a member's peer URLs. Not retried unless provably not applied.
    pub async fn member_update(
        &self,
        id: u64,
        peer_urls: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<pb::MemberUpdateResponse, Error> {
        let req = pb::MemberUpdateRequest {
            id,
            peer_ur_ls: peer_urls.into_iter().map(Into::into).collect(),
        };
        let inner = &self.inner;
        self.call(Idempotency::NotIdempotent, |ch| {
            let req = req.clone();
            async move {
                inner
                    .cluster(ch)
                    .member_update(req)
                    .await
                    .map(tonic::Response::into_inner)
            }
        })
        .await
    }
}
