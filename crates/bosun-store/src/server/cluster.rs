//! The etcd Cluster service: the members as Raft's membership knows them.

use std::sync::Arc;

use bosun_proto::etcdserverpb::cluster_server::Cluster;
use bosun_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse, ResponseHeader,
};
use tonic::{Request, Response, Status};

use super::Replica;
use super::membership::MemberOp;
use crate::raft::Member;

/// The Cluster service of one member.
#[derive(Debug, Clone)]
pub struct ClusterService {
    pub replica: Arc<Replica>,
}

fn to_pb(id: u64, n: &Member, learner: bool) -> PbMember {
    PbMember {
        id,
        name: n.name.clone(),
        peer_ur_ls: n.peer_urls.clone(),
        client_ur_ls: n.client_urls.clone(),
        is_learner: learner,
    }
}

/// The members, voters first, each as etcd describes it.
fn members_pb(list: &[(u64, Member, bool)]) -> Vec<PbMember> {
    let mut out: Vec<PbMember> = list.iter().map(|(id, n, l)| to_pb(*id, n, *l)).collect();
    out.sort_by_key(|m| (m.is_learner, m.id));
    out
}

impl ClusterService {
    /// The current members, voters first, each as etcd describes it.
    pub fn members(&self) -> Vec<PbMember> {
        members_pb(&self.replica.member_list())
    }

    fn header(&self) -> Option<ResponseHeader> {
        // etcd's member responses carry no revision.
        Some(ResponseHeader {
            revision: 0,
            ..self.replica.header(0)
        })
    }

    async fn change(&self, op: MemberOp) -> Result<(u64, Vec<PbMember>, Option<PbMember>), Status> {
        let r = self.replica.member_change(op).await?;
        let me = r
            .members
            .iter()
            .find(|(id, _, _)| *id == r.id)
            .map(|(id, n, l)| to_pb(*id, n, *l));
        Ok((r.id, members_pb(&r.members), me))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        let (_, members, member) = self
            .change(MemberOp::Add {
                peer_urls: r.peer_ur_ls,
                learner: r.is_learner,
            })
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member,
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let (_, members, _) = self
            .change(MemberOp::Remove {
                id: req.into_inner().id,
            })
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = req.into_inner();
        let (_, members, _) = self
            .change(MemberOp::Update {
                id: r.id,
                peer_urls: r.peer_ur_ls,
            })
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if req.get_ref().linearizable {
            self.replica.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let (_, members, _) = self
            .change(MemberOp::Promote {
                id: req.into_inner().id,
            })
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}
