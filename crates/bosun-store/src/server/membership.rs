//! Membership changes, decided by the leader: etcd's member add/remove/promote/update, and the
//! publication of a started member's name and client URLs.
//!
//! Changes go through openraft's joint consensus. A member that leaves the membership is
//! recorded by the state machine as removed; its ID is never given out again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::ChangeMembers;
use openraft::errors::{ChangeMembershipError, ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Replica;
use crate::error::{EtcdError, EtcdResult};
use crate::raft::Member;

/// A membership change, decided and proposed by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MemberOp {
    Add {
        peer_urls: Vec<String>,
        learner: bool,
    },
    Remove {
        id: u64,
    },
    Promote {
        id: u64,
    },
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    /// A started member announces its name and client URLs, as etcd's members publish theirs.
    Publish {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
}

/// The outcome of a [`MemberOp`]: the member concerned and the members afterwards.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberReply {
    pub id: u64,
    pub members: Vec<(u64, Member, bool)>,
}

/// A learner may be promoted once it has at least this share of the leader's log, as etcd
/// requires.
const PROMOTE_IN_SYNC: f64 = 0.9;
/// How long a change waits for an earlier one to commit.
const IN_PROGRESS_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting change looks again.
const IN_PROGRESS_POLL: Duration = Duration::from_millis(50);

fn check_urls(urls: &[String]) -> EtcdResult<()> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    for u in urls {
        let ok = url::Url::parse(u)
            .is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.port().is_some());
        if !ok {
            return Err(EtcdError::MemberBadUrls);
        }
    }
    Ok(())
}

impl Replica {
    /// The members as Raft's membership knows them: ID, attributes, learner or not.
    pub fn member_list(&self) -> Vec<(u64, Member, bool)> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| (*id, n.clone(), !voters.contains(id)))
            .collect()
    }

    /// A fresh member ID: from the peer URLs, the cluster token and the time, never one in
    /// use or ever removed.
    fn new_member_id(&self, peer_urls: &[String], in_use: &BTreeSet<u64>) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut salt = 0u64;
        loop {
            let mut h = Sha256::new();
            h.update(peer_urls.join(",").as_bytes());
            h.update(self.cfg.initial_cluster_token.as_bytes());
            h.update(now.to_be_bytes());
            h.update(salt.to_be_bytes());
            let d = h.finalize();
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[..8]);
            let id = (u64::from_be_bytes(b) >> 1).max(1);
            if !in_use.contains(&id) && !self.is_removed(id) {
                return id;
            }
            salt += 1;
        }
    }

    /// Runs a membership change on this member, which must lead.
    pub(super) async fn leader_member_change(&self, op: MemberOp) -> EtcdResult<MemberReply> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        // One change at a time: openraft refuses a change while another is in flight.
        let _one = self.member_change_lock.lock().await;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let ids: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let node_of = |id: u64| {
            membership
                .get_node(&id)
                .cloned()
                .ok_or(EtcdError::MemberNotFound)
        };
        let url_taken = |urls: &[String], except: u64| {
            membership
                .nodes()
                .any(|(id, n)| *id != except && n.peer_urls.iter().any(|u| urls.contains(u)))
        };
        let (id, change) = match op {
            MemberOp::Add { peer_urls, learner } => {
                check_urls(&peer_urls)?;
                if url_taken(&peer_urls, 0) {
                    return Err(EtcdError::PeerUrlExist);
                }
                let id = self.new_member_id(&peer_urls, &ids);
                let node = Member {
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                };
                let nodes = BTreeMap::from([(id, node)]);
                let change = if learner {
                    ChangeMembers::AddNodes(nodes)
                } else {
                    ChangeMembers::AddVoters(nodes)
                };
                tracing::info!(member = format!("{id:x}"), learner, "adding member");
                (id, Some(change))
            }
            MemberOp::Remove { id } => {
                node_of(id)?;
                let set = BTreeSet::from([id]);
                let change = if voters.contains(&id) {
                    if voters.len() == 1 {
                        return Err(EtcdError::internal(
                            "etcdserver: re-configuration failed due to not enough started members",
                        ));
                    }
                    ChangeMembers::RemoveVoters(set)
                } else {
                    ChangeMembers::RemoveNodes(set)
                };
                tracing::info!(member = format!("{id:x}"), "removing member");
                (id, Some(change))
            }
            MemberOp::Promote { id } => {
                node_of(id)?;
                if voters.contains(&id) {
                    return Err(EtcdError::MemberNotLearner);
                }
                let leader_index = metrics.last_log_index.unwrap_or(0);
                let matched = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |l| l.index);
                if (matched as f64) < leader_index as f64 * PROMOTE_IN_SYNC {
                    return Err(EtcdError::LearnerNotReady);
                }
                tracing::info!(member = format!("{id:x}"), "promoting learner");
                (id, Some(ChangeMembers::AddVoterIds(BTreeSet::from([id]))))
            }
            MemberOp::Update { id, peer_urls } => {
                check_urls(&peer_urls)?;
                let mut node = node_of(id)?;
                if url_taken(&peer_urls, id) {
                    return Err(EtcdError::PeerUrlExist);
                }
                node.peer_urls = peer_urls;
                (
                    id,
                    Some(ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))),
                )
            }
            MemberOp::Publish {
                id,
                name,
                client_urls,
            } => {
                let mut node = node_of(id)?;
                if node.name == name && node.client_urls == client_urls {
                    (id, None)
                } else {
                    node.name = name;
                    node.client_urls = client_urls;
                    (
                        id,
                        Some(ChangeMembers::SetNodes(BTreeMap::from([(id, node)]))),
                    )
                }
            }
        };
        if let Some(change) = change {
            self.change_membership(change).await?;
        }
        Ok(MemberReply {
            id,
            members: self.member_list(),
        })
    }

    /// Proposes `change`, waiting while an earlier change (or a new leader's first entry) is
    /// still uncommitted.
    async fn change_membership(&self, change: ChangeMembers<u64, Member>) -> EtcdResult<()> {
        let deadline = tokio::time::Instant::now() + IN_PROGRESS_WAIT;
        loop {
            // Wait here while the last change is not applied (at a new cluster's start, its
            // first membership): openraft refuses a change then, as below, but also logs the
            // refusal as an error.
            let m = self.metrics();
            let pending = m.membership_config.log_id().as_ref() > m.last_applied.as_ref();
            if pending && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(IN_PROGRESS_POLL).await;
                continue;
            }
            match self.raft.change_membership(change.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(IN_PROGRESS_POLL).await;
                }
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    return Err(EtcdError::NotLeader);
                }
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(EtcdError::Timeout);
                }
                Err(RaftError::APIError(e)) => return Err(EtcdError::internal(e)),
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            }
        }
    }
}
