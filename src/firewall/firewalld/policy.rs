//! Keeping banhound's firewalld policies (`banhound` for input, `banhound-forward` for
//! forwarded traffic) as the jails want them: the permanent definition, which takes a reload,
//! and the runtime one, which is put right in place. Apart from the rest of the backend
//! because the policies' life cycle is the same whichever of the two it is.

use super::objects::{OurPolicy, PolicyShape};
use super::{call_failed, FirewalldError, Repaired, Shared};

impl Shared {
    /// Makes our permanent policy `policy` `wanted` (`None`: removes it); answers whether anything
    /// changed (then firewalld must reload for it to take effect).
    pub(super) async fn sync_permanent_policy(
        &self,
        policy: OurPolicy,
        wanted: Option<&PolicyShape>,
        repaired: &mut Repaired,
    ) -> Result<bool, FirewalldError> {
        let name = policy.name();
        let exists = self
            .config
            .get_policy_names()
            .await
            .map_err(call_failed("getPolicyNames"))?
            .iter()
            .any(|p| p == name);
        match (wanted, exists) {
            (None, false) => Ok(false),
            (None, true) => {
                self.config_policy(policy)
                    .await?
                    .remove()
                    .await
                    .map_err(call_failed(format!("remove policy {name}")))?;
                Ok(true)
            }
            (Some(wanted), false) => {
                self.config
                    .add_policy(name, wanted.permanent_settings(policy))
                    .await
                    .map_err(call_failed(format!("addPolicy({name})")))?;
                repaired.objects.push(format!("permanent policy {name}"));
                Ok(true)
            }
            (Some(wanted), true) => {
                let config = self.config_policy(policy).await?;
                let found = config
                    .get_settings()
                    .await
                    .map_err(call_failed(format!("getSettings({name})")))?;
                let differences = wanted.differences(&PolicyShape::from_settings(&found));
                if differences.is_empty() {
                    return Ok(false);
                }
                config
                    .update(wanted.permanent_settings(policy))
                    .await
                    .map_err(call_failed(format!("update({name})")))?;
                repaired.objects.push(format!(
                    "permanent policy {name} ({})",
                    differences.join(", ")
                ));
                Ok(true)
            }
        }
    }

    /// Puts the runtime policy's zones and rich rules right, in place (no reload).
    pub(super) async fn sync_runtime_policy(
        &self,
        policy: OurPolicy,
        wanted: &PolicyShape,
        repaired: &mut Repaired,
    ) -> Result<(), FirewalldError> {
        let name = policy.name();
        let found = self
            .policies
            .get_policy_settings(name)
            .await
            .map_err(call_failed(format!("getPolicySettings({name})")))?;
        let differences = wanted.runtime_differences(&PolicyShape::from_settings(&found));
        if differences.is_empty() {
            return Ok(());
        }
        self.policies
            .set_policy_settings(name, wanted.runtime_settings())
            .await
            .map_err(call_failed(format!("setPolicySettings({name})")))?;
        repaired.objects.push(format!(
            "runtime policy {name} ({})",
            differences.join(", ")
        ));
        Ok(())
    }
}
