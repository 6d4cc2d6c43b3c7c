//! The actions pipewright gives its engine beyond those the engine knows itself: they need
//! the deployer or the network, which the engine does not depend on. Each implements
//! [`engine::Action`] and sees only its step ([`engine::ActionStep`]).

mod pipewright_deploy;
pub mod record;
mod slack;

/// Every action of this crate, by its `owner/repo` name.
pub fn registry() -> engine::Actions {
    let mut actions = engine::Actions::default();
    actions.register("pipewright/deploy", pipewright_deploy::Deploy);
    actions.register("slackapi/slack-github-action", slack::Slack);
    actions
}
