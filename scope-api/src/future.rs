//! Futures in groups: `Group::run` (cancels on exceed) and
//! `GroupExt::in_group` (charges only).

use crate::error::Exceeded;
use crate::group::Group;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The future returned by [`Group::run`].
#[must_use = "futures do nothing unless polled"]
pub struct Run<F> {
    group: Group,
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future> Future for Run<F> {
    type Output = Result<F::Output, Exceeded>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            panic!("memcg: Run polled after it completed");
        };
        let _g = this.group.enter();
        let seq = this.group.node().exceed_seq();
        let out = inner.as_mut().poll(cx);
        let exceeded = this.group.node().exceed_seq() != seq;
        let verdict = if exceeded {
            // An exceed happened during this poll: report the recorded one.
            this.group.node().take_denied();
            Some(this.group.last_exceeded())
        } else {
            this.group.check().err().map(Some)
        };
        match (out, verdict) {
            (_, Some(e)) => {
                // Drop the tenant's work while still in its group.
                this.inner = None;
                let e = e.unwrap_or_else(|| {
                    crate::bypass(|| crate::error::Exceeded {
                        group: this.group.path().to_string(),
                        limit: crate::error::Limit::Max,
                        limit_bytes: this.group.max().unwrap_or(usize::MAX),
                        usage: this.group.current(),
                        request: 0,
                        denied: false,
                    })
                });
                Poll::Ready(Err(e))
            }
            (Poll::Ready(v), None) => {
                this.inner = None;
                Poll::Ready(Ok(v))
            }
            (Poll::Pending, None) => Poll::Pending,
        }
    }
}

/// The future returned by [`GroupExt::in_group`].
#[must_use = "futures do nothing unless polled"]
pub struct InGroup<F> {
    group: Group,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for InGroup<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let _g = this.group.enter();
        this.inner.as_mut().poll(cx)
    }
}

impl Group {
    /// Runs a future in the group: every poll is entered, and when the
    /// group goes over a limit or an allocation is denied during a poll,
    /// the future is dropped (in the group) and `Err(Exceeded)` returned.
    /// A group already over its limit fails at the first poll.
    pub fn run<F: Future>(&self, fut: F) -> Run<F> {
        let group = self.clone();
        let inner = group.scope(|| Box::pin(fut));
        Run {
            group,
            inner: Some(inner),
        }
    }
}

/// Runs any future in a group (every poll entered), without cancelling.
pub trait GroupExt: Future + Sized {
    /// Charges the future's allocations to `group`.
    fn in_group(self, group: &Group) -> InGroup<Self> {
        let group = group.clone();
        let inner = group.scope(|| Box::pin(self));
        InGroup { group, inner }
    }
}

impl<F: Future> GroupExt for F {}
