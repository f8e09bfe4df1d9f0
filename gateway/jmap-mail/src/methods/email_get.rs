//! (to be written)

use jmap_engine::{AccountDirectory, Engine};

use super::MailAccount;

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    let _ = engine;
}
