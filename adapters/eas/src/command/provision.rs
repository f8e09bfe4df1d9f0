//! Provision (MS-ASPROV): the two-phase policy download and acknowledgment.

use wbxml::Element;
use wbxml::tag::{provision as pv, settings as st};

use super::{ParseError, expect_root, leaf, number, opt_number, opt_text};

const PROVISION: &str = "Provision";
/// The policy type of protocol 12.0 and later.
pub const POLICY_TYPE: &str = "MS-EAS-Provisioning-WBXML";

/// A `Provision` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provision {
    /// Phase 1: ask for the policy, describing the device.
    Request {
        model: String,
        friendly_name: String,
        user_agent: String,
    },
    /// Phase 2: acknowledge the temporary key (status 1: policy applied).
    Acknowledge { policy_key: String, status: u32 },
}

impl Provision {
    pub fn to_element(&self) -> Element {
        match self {
            Provision::Request {
                model,
                friendly_name,
                user_agent,
            } => Element::new(pv::Provision)
                .child(
                    Element::new(st::DeviceInformation).child(
                        Element::new(st::Set)
                            .child(leaf(st::Model, model))
                            .child(leaf(st::FriendlyName, friendly_name))
                            .child(leaf(st::OS, "Linux"))
                            .child(leaf(st::UserAgent, user_agent)),
                    ),
                )
                .child(
                    Element::new(pv::Policies)
                        .child(Element::new(pv::Policy).child(leaf(pv::PolicyType, POLICY_TYPE))),
                ),
            Provision::Acknowledge { policy_key, status } => Element::new(pv::Provision).child(
                Element::new(pv::Policies).child(
                    Element::new(pv::Policy)
                        .child(leaf(pv::PolicyType, POLICY_TYPE))
                        .child(leaf(pv::PolicyKey, policy_key))
                        .child(leaf(pv::Status, status.to_string())),
                ),
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedPolicy {
    /// 1 success, 2 no policy for this client, 3 unknown policy type, 4 policy data
    /// corrupt, 5 the acknowledged key is not the current one.
    pub status: u32,
    pub policy_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionResponse {
    pub status: u32,
    pub policy: Option<ProvisionedPolicy>,
    /// The server asks the device to wipe itself; the gateway never does.
    pub remote_wipe: bool,
}

impl ProvisionResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, pv::Provision, PROVISION)?;
        let policy = match root.find_path(&[pv::Policies, pv::Policy]) {
            Some(p) => Some(ProvisionedPolicy {
                status: opt_number(p, pv::Status, PROVISION)?.unwrap_or(1),
                policy_key: opt_text(p, pv::PolicyKey, PROVISION)?.map(str::to_owned),
            }),
            None => None,
        };
        Ok(ProvisionResponse {
            status: number(root, pv::Status, PROVISION)?,
            policy,
            remote_wipe: root.find(pv::RemoteWipe).is_some(),
        })
    }
}
