//! The etcd Cluster service: the members as Raft's membership knows them.

use std::sync::Arc;

use bosun_proto::etcdserverpb::cluster_server::Cluster;
use bosun_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use super::Node;

/// The Cluster service of one member.
#[derive(Debug, Clone)]
pub struct ClusterService {
    pub node: Arc<Node>,
}

impl ClusterService {
    /// The current members, voters first, each as etcd describes it.
    pub fn members(&self) -> Vec<PbMember> {
        let m = self.node.metrics();
        let membership = m.membership_config.membership();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let mut out: Vec<PbMember> = membership
            .nodes()
            .map(|(id, n)| PbMember {
                id: *id,
                name: n.name.clone(),
                peer_ur_ls: n.peer_urls.clone(),
                client_ur_ls: n.client_urls.clone(),
                is_learner: learners.contains(id),
            })
            .collect();
        out.sort_by_key(|m| (m.is_learner, m.id));
        out
    }

    fn header(&self) -> Option<ResponseHeader> {
        // etcd's member responses carry no revision.
        Some(ResponseHeader {
            revision: 0,
            ..self.node.header(0)
        })
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented(
            "member add comes with multi-member clusters",
        ))
    }

    async fn member_remove(
        &self,
        _req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented(
            "member remove comes with multi-member clusters",
        ))
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "member update comes with multi-member clusters",
        ))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.node.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented(
            "member promote comes with multi-member clusters",
        ))
    }
}
