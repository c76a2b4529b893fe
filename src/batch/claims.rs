//! The finalize claims this process holds, so that a claim whose finalizer could not finish (an error,
//! or a handler aborted at the end of the shutdown grace period) is released at once instead of
//! blocking the batch for the rest of its lease.

use std::collections::HashMap;
use std::sync::Mutex;

use super::domain::BatchDomain;
use super::engine::BatchEngine;

/// Claim owner -> batch id, for every claim taken and not yet finished or released.
#[derive(Debug, Default)]
pub struct ClaimRegistry {
    held: Mutex<HashMap<String, String>>,
}

impl ClaimRegistry {
    pub fn hold(&self, owner: &str, batch_id: &str) {
        self.lock().insert(owner.to_string(), batch_id.to_string());
    }

    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }

    /// (owner, batch id) of every claim held now.
    pub fn held(&self) -> Vec<(String, String)> {
        self.lock().iter().map(|(owner, batch)| (owner.clone(), batch.clone())).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // A poisoned lock only means a thread panicked between two map operations; the map is valid.
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<D: BatchDomain> BatchEngine<D> {
    /// Gives up `owner`'s claim on `batch_id` (best effort: if it cannot be written, the lease expires
    /// on its own) and forgets it.
    pub(crate) async fn release(&self, batch_id: &str, owner: &str) {
        match self.store().release_claim(batch_id, owner).await {
            Ok(()) => tracing::info!(batch_id, owner, "finalize claim released"),
            Err(error) => {
                tracing::warn!(batch_id, owner, %error, "could not release the finalize claim; it expires with its lease")
            }
        }
        self.claims().forget(owner);
    }

    /// Releases every claim this process still holds; called at shutdown, after the handlers were
    /// drained or aborted. Returns how many there were.
    pub async fn release_held_claims(&self) -> usize {
        let held = self.claims().held();
        for (owner, batch_id) in &held {
            self.release(batch_id, owner).await;
        }
        held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_lists_what_is_held_until_forgotten() {
        let registry = ClaimRegistry::default();
        registry.hold("a#1", "b1");
        registry.hold("a#2", "b2");
        registry.forget("a#1");
        assert_eq!(registry.held(), vec![("a#2".to_string(), "b2".to_string())]);
        registry.forget("a#2");
        assert!(registry.held().is_empty());
    }
}
