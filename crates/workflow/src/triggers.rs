//! Whether a workflow's `on:` fires for an event (the rules live in `plan::trigger`).

use plan::trigger::{Event, Filters, TriggerError};

use crate::model::{Spanned, Workflow};

fn strings(list: &Option<Vec<Spanned<String>>>) -> Option<Vec<String>> {
    list.as_ref()
        .map(|l| l.iter().map(|s| s.value.clone()).collect())
}

impl Workflow {
    /// Whether this workflow runs for `event`.
    pub fn fires(&self, event: &Event) -> Result<bool, TriggerError> {
        let Some(t) = self.on.events.get(&event.name) else {
            return Ok(false);
        };
        let (b, bi, tg, ti, p, pi, ty) = (
            strings(&t.branches),
            strings(&t.branches_ignore),
            strings(&t.tags),
            strings(&t.tags_ignore),
            strings(&t.paths),
            strings(&t.paths_ignore),
            strings(&t.types),
        );
        let f = Filters {
            branches: b.as_deref(),
            branches_ignore: bi.as_deref(),
            tags: tg.as_deref(),
            tags_ignore: ti.as_deref(),
            paths: p.as_deref(),
            paths_ignore: pi.as_deref(),
            types: ty.as_deref(),
        };
        plan::trigger::fires(&f, event)
    }
}
