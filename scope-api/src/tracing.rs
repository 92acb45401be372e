//! `GroupLayer`: a `tracing_subscriber::Layer` that runs each span's
//! allocations in the group the span names (feature `tracing`).
//!
//! The protocol, per thread: entering a span that names a group switches
//! the thread to the group and pushes a frame (the span's id, the group the
//! thread was in); exiting it pops the frame and switches back. Frames live
//! in a thread-local stack, so a span entered on one thread and later on
//! another (a future instrumented with `.instrument(span)` is entered at
//! the start of each poll and exited at its end, on whichever worker polls
//! it) gets a frame on each, and each exit restores what its own enter
//! replaced. A span exited out of order (not the innermost) loses its
//! frame, and the frame above inherits the group it had replaced, so when
//! the last of them is exited the thread is back in the group it was in
//! before the first. Spans that name no group push nothing and leave the
//! thread's group alone.

use crate::enter::switch_to;
use crate::group::Group;
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// The field a span names its group by unless told otherwise.
pub const DEFAULT_FIELD: &str = "memcg.group";

/// A [`Layer`] that runs a span's allocations in the group the span
/// names: a span with the field `memcg.group` (or the one set with
/// [`field`](Self::field)) holding a group path, as
/// [`Group::path`] spells it, runs in that group whenever it is entered.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memcg_alloc::SlabAlloc = memcg_alloc::SlabAlloc::new();
/// use memcg_scope::{tracing::GroupLayer, Group};
/// use tracing_subscriber::layer::SubscriberExt;
///
/// # fn main() {
/// let a = Group::new("layer-doc");
/// let subscriber = tracing_subscriber::registry().with(GroupLayer::new());
/// tracing::subscriber::with_default(subscriber, || {
///     let span = tracing::info_span!("req", memcg.group = "/layer-doc");
///     let _in = span.enter();
///     assert_eq!(memcg_scope::current(), a); // allocations go to `a`
/// });
/// # }
/// ```
///
/// - The field's value is a string (`memcg.group = "/t/a"`, or
///   `memcg.group = %path` for a value that displays as the path). It is
///   read when the span is made, and again when it is recorded later
///   (`memcg.group = tracing::field::Empty`, then `span.record(..)`),
///   which takes effect at the next enter. The path is looked up with
///   [`Group::find`] (O(log n), under the registry's lock) and the span
///   keeps a handle on the group until it closes.
/// - A path that names no live group is counted (see
///   [`unknown_paths`](Self::unknown_paths)) and the span runs as if it
///   named none.
/// - A span that names no group leaves the thread's group as it is: inside
///   a span naming `/t/a`, an unnamed child span still allocates in `/t/a`;
///   a child naming `/t/b` allocates in `/t/b` and returns to `/t/a` when
///   exited.
/// - Spans entered across `.await` (with `.instrument(span)`, on any
///   runtime) run in their group on every poll, whichever thread polls.
///   Holding a `span.enter()` guard across an `.await` is wrong here as it
///   is for tracing itself: the thread stays in the group while other
///   tasks run on it.
/// - Entering and exiting are O(1) in the number of groups. The layer's
///   own records (the span's handle, the thread's stack of frames, the
///   formatted value of a non-string field) are allocated in
///   [`bypass`](crate::bypass), charged to the root, never to a tenant.
///   What the subscriber under it allocates for a span (the registry's
///   span slots) is charged to the group the thread is in when the span is
///   made.
///
/// Spans are not a trust boundary: code that can make a span can name any
/// group, the root included (`memcg.group = "/"` runs outside every
/// limit). Name groups from host code (request routing, a tenant's
/// entry point), not from the tenant's own code.
///
/// Charging happens only when [`SlabAlloc`](memcg_alloc::SlabAlloc) is the
/// global allocator.
#[derive(Clone, Debug)]
pub struct GroupLayer {
    field: Cow<'static, str>,
    unknown: Arc<AtomicU64>,
}

impl Default for GroupLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupLayer {
    /// A layer reading the group path from the field [`DEFAULT_FIELD`]
    /// (`memcg.group`).
    pub fn new() -> Self {
        GroupLayer {
            field: Cow::Borrowed(DEFAULT_FIELD),
            unknown: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reads the group path from the field `name` instead, e.g.
    /// `GroupLayer::new().field("tenant_group")` for
    /// `info_span!("req", tenant_group = "/t/a")`.
    pub fn field(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.field = name.into();
        self
    }

    /// The field read.
    pub fn field_name(&self) -> &str {
        &self.field
    }

    /// How many spans named a path that no live group had (shared by the
    /// clones of this layer: keep one to read it after handing the layer
    /// to a subscriber).
    pub fn unknown_paths(&self) -> u64 {
        self.unknown.load(Ordering::Relaxed)
    }

    /// Looks the span's field up in `values` and records the group it names
    /// in the span's extensions (replacing one recorded before).
    fn resolve<S>(&self, id: &Id, ctx: &Context<'_, S>, record: impl FnOnce(&mut dyn Visit))
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        crate::bypass(|| {
            let mut v = FieldVisitor {
                field: &self.field,
                path: None,
            };
            record(&mut v);
            let Some(path) = v.path else {
                return;
            };
            let Some(span) = ctx.span(id) else {
                return;
            };
            match Group::find(&path) {
                Some(group) => {
                    let old = span.extensions_mut().replace(SpanGroup(group));
                    // A replaced handle may be the group's last: dropped
                    // here, outside the extensions' lock.
                    drop(old);
                }
                None => {
                    self.unknown.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// The group a span names, in the span's extensions.
struct SpanGroup(Group);

/// Collects the value of one field as a string.
struct FieldVisitor<'f> {
    field: &'f str,
    path: Option<String>,
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == self.field {
            self.path = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == self.field {
            // `%path` arrives here as a value whose Debug is its Display.
            self.path = Some(format!("{value:?}"));
        }
    }
}

/// One entered span that named a group, on this thread.
struct Frame {
    span: Id,
    /// The group the thread was in when the span was entered (`None`: the
    /// root), restored when it is exited.
    prev: Option<Group>,
}

thread_local! {
    /// This thread's entered spans that named a group, innermost last.
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Switches the thread to `group` on behalf of `span`.
fn enter_span(span: &Id, group: Group) {
    // During thread teardown the stack may be gone: then nothing is
    // switched, so nothing is left to restore.
    let _ = FRAMES.try_with(|frames| {
        let target = (!group.is_root()).then_some(group);
        let prev = switch_to(target);
        let mut frames = frames.borrow_mut();
        if frames.len() == frames.capacity() {
            // The stack outlives every tenant: grown in the root.
            crate::bypass(|| frames.reserve(8));
        }
        frames.push(Frame {
            span: span.clone(),
            prev,
        });
    });
}

/// Undoes the innermost frame of `span` on this thread, if any.
fn exit_span(span: &Id) {
    // (whether the thread goes back, the group to go back to or a handle
    // no frame needs any more)
    let undo = FRAMES.try_with(|frames| {
        let mut frames = frames.borrow_mut();
        let i = frames.iter().rposition(|f| f.span == *span)?;
        let frame = frames.remove(i);
        Some(match frames.get_mut(i) {
            // Exited out of order: the frame above (entered after this
            // one) now restores what this one replaced, and the thread
            // stays in the innermost span's group.
            Some(above) => (false, std::mem::replace(&mut above.prev, frame.prev)),
            // The innermost: the thread goes back.
            None => (true, frame.prev),
        })
    });
    // Outside the stack's borrow: a handle dropped may be its group's last,
    // and a group's death takes locks and switches.
    match undo {
        Ok(Some((true, prev))) => drop(switch_to(prev)),
        Ok(Some((false, stale))) => drop(stale),
        _ => {}
    }
}

impl<S> Layer<S> for GroupLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // Most spans lack the field: one look at the callsite's field set.
        if attrs.metadata().fields().field(&*self.field).is_none() {
            return;
        }
        self.resolve(id, &ctx, |v| attrs.record(v));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(field) = ctx
            .metadata(id)
            .and_then(|m| m.fields().field(&*self.field))
        else {
            return;
        };
        if !values.contains(&field) {
            return;
        }
        self.resolve(id, &ctx, |v| values.record(v));
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let group = span.extensions().get::<SpanGroup>().map(|g| g.0.clone());
        drop(span);
        if let Some(group) = group {
            enter_span(id, group);
        }
    }

    fn on_exit(&self, id: &Id, _ctx: Context<'_, S>) {
        exit_span(id);
    }
}
