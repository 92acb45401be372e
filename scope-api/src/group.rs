//! Groups: handles, the builder, limits and the registry of live groups.

use crate::error::BuildError;
use crate::event::Event;
use memcg_alloc::groups::{self, GroupNode, UNLIMITED};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

/// What happens when a charge takes a group over `max` (or `slab_max`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OnExceed {
    /// The allocation returns null. `try_reserve` and other fallible
    /// allocations get an error; an infallible one (`Box::new`,
    /// `Vec::push`, ...) makes Rust abort the whole process, as it does on
    /// any allocation failure. Use it for code whose allocations are all
    /// fallible, or inside [`fallible`](crate::fallible) sections.
    Fail,
    /// The allocation succeeds and the group is marked over its limit:
    /// [`check`](crate::check) and [`Group::run`] report
    /// [`Exceeded`](crate::Exceeded), so the host can cancel the tenant's
    /// work at a safe point.
    #[default]
    Report,
}

pub(crate) type Hook = Arc<dyn Fn(&Event) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) node: *mut GroupNode,
    pub(crate) name: String,
    pub(crate) path: String,
    /// Keeps the parent alive while this group lives.
    pub(crate) parent: Option<Group>,
    pub(crate) hooks: Mutex<Vec<Hook>>,
}

// SAFETY: the node is only used through its atomics; everything else is
// Send + Sync.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.parent.is_none() {
            return; // the root never dies
        }
        // SAFETY: the id is read from our live node.
        let id = unsafe { (*self.node).id };
        crate::bypass(|| {
            let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.remove(&id);
        });
        // SAFETY: we own the handle reference, given up here.
        unsafe { GroupNode::kill(self.node) };
        // This thread's cache of the group goes at once (its reserve back
        // to the parent, its empty slabs to the segments).
        groups::sweep_dead();
    }
}

/// A live group in the registry: its path is kept here so that names can
/// be checked under the lock without taking a handle (a handle dropped
/// last under the lock would deadlock on the group's death).
pub(crate) struct Entry {
    pub(crate) path: String,
    pub(crate) group: Weak<Inner>,
}

/// Live groups by node id (for `report`, event hooks and error paths).
/// Every holder runs bypassed (charging the root, which has no limits), so
/// no event, and so no hook, can fire while it is held.
pub(crate) static REGISTRY: Mutex<BTreeMap<u64, Entry>> = Mutex::new(BTreeMap::new());

/// Every live group but the root, in creation order. Handles are taken
/// under the lock and used after it: a handle dropped last runs the
/// group's death, which takes the lock again.
pub(crate) fn live_groups() -> Vec<Group> {
    crate::bypass(|| {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.values()
            .filter_map(|e| e.group.upgrade())
            .map(|inner| Group { inner })
            .collect()
    })
}

/// An accounting group: allocations made while it is entered (on any
/// thread) are charged to it and its ancestors, limited by their limits.
///
/// Cloning is cheap (a reference count). When the last handle is dropped
/// (guards and futures hold one) the group dies: its remaining charge stays
/// with its parent until the objects are freed.
#[derive(Clone)]
pub struct Group {
    pub(crate) inner: Arc<Inner>,
}

impl PartialEq for Group {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}
impl Eq for Group {}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("path", &self.inner.path)
            .field("current", &self.node().current())
            .finish()
    }
}

fn root_group() -> &'static Group {
    static ROOT: std::sync::OnceLock<Group> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| Group {
        inner: Arc::new(Inner {
            node: groups::root_node(),
            name: String::new(),
            path: "/".to_string(),
            parent: None,
            hooks: Mutex::new(Vec::new()),
        }),
    })
}

/// The root group: everything not charged elsewhere. It has no limits.
pub fn root() -> Group {
    root_group().clone()
}

fn opt(v: usize) -> Option<usize> {
    (v != UNLIMITED).then_some(v)
}

impl Group {
    /// Starts building a child of the root named `name`.
    pub fn builder(name: &str) -> GroupBuilder {
        GroupBuilder::new(root(), name)
    }

    /// A child of the root with no limits.
    ///
    /// # Panics
    /// On an invalid or taken name (see [`GroupBuilder::try_build`]).
    pub fn new(name: &str) -> Group {
        Group::builder(name).build()
    }

    /// Starts building a child of this group.
    pub fn child(&self, name: &str) -> GroupBuilder {
        GroupBuilder::new(self.clone(), name)
    }

    pub(crate) fn node(&self) -> &GroupNode {
        // SAFETY: our handle reference keeps the node alive.
        unsafe { &*self.inner.node }
    }

    pub(crate) fn node_ptr(&self) -> *mut GroupNode {
        self.inner.node
    }

    /// The group's name (`""` for the root).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The group's path, e.g. `/tenants/a` (`/` for the root).
    pub fn path(&self) -> &str {
        &self.inner.path
    }

    /// The parent group (`None` for the root).
    pub fn parent(&self) -> Option<Group> {
        self.inner.parent.clone()
    }

    /// Whether this is the root group.
    pub fn is_root(&self) -> bool {
        self.inner.parent.is_none()
    }

    fn assert_not_root(&self, what: &str) {
        assert!(
            !self.is_root(),
            "memcg: the root group has no limits ({what})"
        );
    }

    /// Sets the hard limit in bytes (`None`: no limit). A value below the
    /// current usage puts the group over its limit at once (nothing is
    /// freed by force).
    ///
    /// # Panics
    /// On the root group.
    pub fn set_max(&self, max: Option<usize>) {
        self.assert_not_root("set_max");
        self.node().set_max(max.unwrap_or(UNLIMITED));
    }

    /// Sets the soft limit in bytes (`None`: none). Crossing it counts a
    /// `high` event and runs hooks; nothing fails.
    ///
    /// # Panics
    /// On the root group.
    pub fn set_high(&self, high: Option<usize>) {
        self.assert_not_root("set_high");
        self.node().set_high(high.unwrap_or(UNLIMITED));
    }

    /// Sets the small-object (slab) limit in bytes (`None`: none). Below
    /// `max` it limits small objects on its own; at or above `max` it only
    /// tracks.
    ///
    /// # Panics
    /// On the root group.
    pub fn set_slab_max(&self, slab_max: Option<usize>) {
        self.assert_not_root("set_slab_max");
        self.node().set_slab_max(slab_max.unwrap_or(UNLIMITED));
    }

    /// Sets what happens on an exceed.
    ///
    /// # Panics
    /// On the root group.
    pub fn set_on_exceed(&self, policy: OnExceed) {
        self.assert_not_root("set_on_exceed");
        self.node().set_fail_mode(policy == OnExceed::Fail);
    }

    /// The exceed policy.
    pub fn on_exceed(&self) -> OnExceed {
        if self.node().fail_mode() {
            OnExceed::Fail
        } else {
            OnExceed::Report
        }
    }

    /// The hard limit, if any.
    pub fn max(&self) -> Option<usize> {
        opt(self.node().max())
    }

    /// The soft limit, if any.
    pub fn high(&self) -> Option<usize> {
        opt(self.node().high())
    }

    /// The small-object limit, if any.
    pub fn slab_max(&self) -> Option<usize> {
        opt(self.node().slab_max())
    }

    /// Bytes charged now to this group and its descendants (including
    /// per-thread reserves; see [`flush`](crate::flush)).
    pub fn current(&self) -> usize {
        self.node().current()
    }

    /// The highest `current` since creation or [`reset_peak`](Self::reset_peak).
    pub fn peak(&self) -> usize {
        self.node().peak()
    }

    /// Brings `peak` down to `current`.
    pub fn reset_peak(&self) {
        self.node().reset_peak();
    }

    /// Registers a hook run on every event of this group or a descendant
    /// (`high`, `max`, `fail`). Hooks run on the allocating thread, right
    /// after the event, with allocations charged to the root; a hook's own
    /// allocations never trigger hooks, and a panicking hook is caught (it
    /// never unwinds into the allocator; the panic message is printed as
    /// usual).
    pub fn on_event(&self, hook: impl Fn(&Event) + Send + Sync + 'static) {
        crate::event::install();
        crate::bypass(|| {
            let mut hooks = self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner());
            hooks.push(Arc::new(hook));
        });
        self.node()
            .has_hooks
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Live groups with this parent.
    pub fn children(&self) -> Vec<Group> {
        crate::bypass(|| {
            live_groups()
                .into_iter()
                .filter(|g| g.inner.parent.as_ref().is_some_and(|p| p == self))
                .collect()
        })
    }

    /// The live group with this node id, if any.
    pub(crate) fn by_id(id: u64) -> Option<Group> {
        if id == 0 {
            return Some(root());
        }
        let found = crate::bypass(|| {
            let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.get(&id).and_then(|e| e.group.upgrade())
        });
        found.map(|inner| Group { inner })
    }
}

/// Builds a group: `Group::builder("a").max(64 << 20).build()`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct GroupBuilder {
    parent: Group,
    name: String,
    max: Option<usize>,
    high: Option<usize>,
    slab_max: Option<usize>,
    on_exceed: OnExceed,
}

impl GroupBuilder {
    fn new(parent: Group, name: &str) -> Self {
        GroupBuilder {
            parent,
            name: name.to_string(),
            max: None,
            high: None,
            slab_max: None,
            on_exceed: OnExceed::Report,
        }
    }

    /// The hard limit in bytes (0 allowed: every charge exceeds).
    pub fn max(mut self, bytes: usize) -> Self {
        self.max = Some(bytes);
        self
    }

    /// The soft limit in bytes.
    pub fn high(mut self, bytes: usize) -> Self {
        self.high = Some(bytes);
        self
    }

    /// The small-object limit in bytes.
    pub fn slab_max(mut self, bytes: usize) -> Self {
        self.slab_max = Some(bytes);
        self
    }

    /// The exceed policy (default [`OnExceed::Report`]).
    pub fn on_exceed(mut self, policy: OnExceed) -> Self {
        self.on_exceed = policy;
        self
    }

    /// Builds the group.
    ///
    /// # Panics
    /// When [`try_build`](Self::try_build) returns an error.
    pub fn build(self) -> Group {
        match self.try_build() {
            Ok(g) => g,
            Err(e) => panic!("memcg: {e}"),
        }
    }

    /// Builds the group, or says why it cannot be built.
    pub fn try_build(self) -> Result<Group, BuildError> {
        let n = &self.name;
        if n.is_empty() || n.len() > 64 || n.contains('/') || n.chars().any(char::is_control) {
            return Err(BuildError::InvalidName(n.clone()));
        }
        let path = if self.parent.is_root() {
            format!("/{n}")
        } else {
            format!("{}/{n}", self.parent.path())
        };
        crate::fork::install();
        crate::bypass(|| {
            let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            if reg.values().any(|e| e.path == path) {
                return Err(BuildError::NameTaken(path.clone()));
            }
            // SAFETY: the parent handle keeps its node alive.
            let node = unsafe { groups::create_node(self.parent.node_ptr()) };
            if node.is_null() {
                return Err(BuildError::OutOfMemory);
            }
            // SAFETY: the new node is live; we own its handle reference.
            let nr = unsafe { &*node };
            nr.set_max(self.max.unwrap_or(UNLIMITED));
            nr.set_high(self.high.unwrap_or(UNLIMITED));
            nr.set_slab_max(self.slab_max.unwrap_or(UNLIMITED));
            nr.set_fail_mode(self.on_exceed == OnExceed::Fail);
            let inner = Arc::new(Inner {
                node,
                name: self.name.clone(),
                path: path.clone(),
                parent: Some(self.parent.clone()),
                hooks: Mutex::new(Vec::new()),
            });
            reg.insert(
                nr.id,
                Entry {
                    path: path.clone(),
                    group: Arc::downgrade(&inner),
                },
            );
            Ok(Group { inner })
        })
    }
}
