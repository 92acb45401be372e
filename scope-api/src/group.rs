//! Groups: handles, the builder, limits and the registry of live groups.

use crate::error::BuildError;
use crate::event::Event;
use memcg_alloc::groups::{self, GroupNode, UNLIMITED};
use std::collections::{BTreeMap, BTreeSet};
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

/// `repr(C)`, `node` and `parent` first: entering reads both and bumps
/// the reference count beside them, so one cache line serves the switch.
/// Kept small (a group costs its handle's 64-byte allocation and its path):
/// the name is the path's last component, and hooks live in [`HOOKS`],
/// paid for only by groups that have some.
#[repr(C)]
pub(crate) struct Inner {
    pub(crate) node: *mut GroupNode,
    /// Keeps the parent alive while this group lives.
    pub(crate) parent: Option<Group>,
    pub(crate) path: Box<str>,
    /// Where the name starts in `path`.
    name_at: u32,
}

impl Inner {
    pub(crate) fn new(node: *mut GroupNode, parent: Option<Group>, path: &str) -> Inner {
        let name_at = path.rfind('/').map_or(0, |i| i + 1) as u32;
        Inner {
            node,
            parent,
            path: path.into(),
            name_at,
        }
    }

    fn name(&self) -> &str {
        &self.path[self.name_at as usize..]
    }
}

/// The event hooks of every group that has some, by node id; an entry goes
/// with its group. Taken, like the registry, only by bypassed code.
pub(crate) static HOOKS: Mutex<BTreeMap<u64, Vec<Hook>>> = Mutex::new(BTreeMap::new());

/// The hooks registered on the group with node id `id` (none once it died).
pub(crate) fn hooks_of(id: u64) -> Vec<Hook> {
    let hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
    hooks.get(&id).cloned().unwrap_or_default()
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
        // SAFETY: our handle reference keeps the node alive until `kill`
        // below; the id is written before the node is published.
        let id = unsafe { (*self.node).id };
        // SAFETY: as above.
        let has_hooks = unsafe {
            (*self.node)
                .has_hooks
                .load(std::sync::atomic::Ordering::Acquire)
        };
        crate::bypass(|| {
            let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.remove(id, &self.path);
            drop(reg);
            if has_hooks {
                let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
                hooks.remove(&id);
            }
        });
        // This thread's cache of the group goes at once (its reserve back
        // to the group, its empty slabs to the segments); no thread is in
        // the group, since entering holds a handle.
        // SAFETY: our handle reference keeps the node alive here.
        unsafe { groups::forget_group(self.node) };
        // SAFETY: we own the handle reference, given up here.
        unsafe { GroupNode::kill(self.node) };
    }
}

/// A group in the registry. Only a weak reference: the registry never
/// keeps a group alive, and a handle upgraded under the lock is dropped
/// after it (a handle dropped last under the lock would deadlock on the
/// group's death, which takes the lock).
pub(crate) struct Entry {
    /// The parent's node id (0 for a child of the root).
    parent: u64,
    group: Weak<Inner>,
}

impl Entry {
    /// Whether a handle to the group still exists. False once the last
    /// handle is gone, even before the group's death reaches the registry.
    fn is_live(&self) -> bool {
        self.group.strong_count() > 0
    }
}

/// The groups that are alive (or dying: last handle gone, not yet
/// removed), indexed three ways so that every lookup is O(log n) in the
/// number of groups:
///
/// - by node id, which grows with each group made, so iteration is
///   creation order (`report` lists siblings in that order);
/// - by (hash of the path, id), for name checks on build and
///   [`Group::find`]: a hash hit is confirmed against the group's own path,
///   so the path is stored once, in its handle;
/// - by (parent id, child id), so a group's children are one range.
///
/// The root is in none of them (it never dies; its id is 0).
///
/// Every holder of the lock runs bypassed (charging the root, which has no
/// limits), so no event, and so no hook, can fire while it is held; the
/// maps allocate through the global allocator, so this matters.
pub(crate) struct Registry {
    by_id: BTreeMap<u64, Entry>,
    /// Several groups can share a path's entry range: a dying group's path
    /// may be taken over by a new group before the dying one is removed
    /// (and unrelated paths may share a hash).
    by_path: BTreeSet<(u64, u64)>,
    children: BTreeSet<(u64, u64)>,
}

/// The hash `by_path` files a path under.
fn path_hash(path: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    path.hash(&mut h);
    h.finish()
}

impl Registry {
    pub(crate) const fn new() -> Self {
        Registry {
            by_id: BTreeMap::new(),
            by_path: BTreeSet::new(),
            children: BTreeSet::new(),
        }
    }

    /// The live group (handle alive) registered under id `id` whose path
    /// is `path`, as its registry entry.
    fn live_with_path(&self, id: u64, path: &str) -> Option<&Entry> {
        let e = self.by_id.get(&id)?;
        if !e.is_live() {
            return None;
        }
        // SAFETY: a live entry's group is fully there: its last handle,
        // if dropped after the check above, runs `Inner::drop`, which
        // waits for this registry's lock (held by our caller) before its
        // fields go; the weak reference keeps the allocation.
        let inner = unsafe { &*e.group.as_ptr() };
        (*inner.path == *path).then_some(e)
    }

    /// The id of the live group that holds `path`, if any.
    fn id_of(&self, path: &str) -> Option<u64> {
        let h = path_hash(path);
        self.by_path
            .range((h, 0)..=(h, u64::MAX))
            .map(|&(_, id)| id)
            .find(|&id| self.live_with_path(id, path).is_some())
    }

    /// Whether a live group holds `path`. A group whose last handle is
    /// gone does not: its death is under way and will not be undone, so
    /// its path is free for a new group at once (rather than failing with
    /// `NameTaken` until the dying thread gets the lock).
    fn path_taken(&self, path: &str) -> bool {
        self.id_of(path).is_some()
    }

    /// Records a new group; a dying holder of the same path stays until
    /// its own removal, and is never found by path again.
    fn insert(&mut self, id: u64, parent: u64, path: &str, group: Weak<Inner>) {
        self.by_id.insert(id, Entry { parent, group });
        self.children.insert((parent, id));
        self.by_path.insert((path_hash(path), id));
    }

    /// Forgets group `id` (whose path was `path`).
    fn remove(&mut self, id: u64, path: &str) {
        if let Some(e) = self.by_id.remove(&id) {
            self.children.remove(&(e.parent, id));
        }
        self.by_path.remove(&(path_hash(path), id));
    }

    fn get(&self, id: u64) -> Option<Group> {
        let inner = self.by_id.get(&id)?.group.upgrade()?;
        Some(Group { inner })
    }

    fn find(&self, path: &str) -> Option<Group> {
        self.id_of(path).and_then(|id| self.get(id))
    }

    /// Live children of `parent`, in creation order.
    fn children(&self, parent: u64) -> Vec<Group> {
        self.children
            .range((parent, 0)..=(parent, u64::MAX))
            .filter_map(|&(_, id)| self.get(id))
            .collect()
    }

    /// Every live group, in creation order.
    fn live(&self) -> Vec<Group> {
        self.by_id
            .values()
            .filter_map(|e| e.group.upgrade())
            .map(|inner| Group { inner })
            .collect()
    }
}

/// The registry of live groups (for `report`, `find`, `children`, event
/// hooks and error paths). See [`Registry`] for the rules of the lock.
pub(crate) static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new());

/// Every live group but the root, in creation order. Handles are taken
/// under the lock and used (and dropped) after it: a handle dropped last
/// runs the group's death, which takes the lock again.
pub(crate) fn live_groups() -> Vec<Group> {
    crate::bypass(|| {
        let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.live()
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
    ROOT.get_or_init(|| {
        // Every group descends from this handle: from here on the report
        // at exit (under MEMCG_SHOW_STATS=1) can print the tree.
        crate::exit_report::install();
        Group {
            inner: Arc::new(Inner::new(groups::root_node(), None, "/")),
        }
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
        self.inner.name()
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
        let id = self.node().id;
        crate::bypass(|| {
            let mut hooks = HOOKS.lock().unwrap_or_else(|e| e.into_inner());
            hooks.entry(id).or_default().push(Arc::new(hook));
        });
        self.node()
            .has_hooks
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether the group was built with
    /// [`isolated(true)`](GroupBuilder::isolated): its small objects get
    /// slabs of their own. False for the root.
    pub fn is_isolated(&self) -> bool {
        self.node().is_isolated()
    }

    /// Live groups with this parent, in creation order. O(log n + k) for
    /// n groups of which k are this group's children.
    pub fn children(&self) -> Vec<Group> {
        let id = self.node().id;
        crate::bypass(|| {
            let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.children(id)
        })
    }

    /// The live group whose [`path`](Self::path) is `path` (`"/"` gives the
    /// root), in O(log n) for n groups. The path must be spelled as `path`
    /// returns it: no trailing `/`, no `.` or `..`, no repeated `/`.
    ///
    /// A group is found from its creation until its last handle is dropped;
    /// after that `find` answers `None`, and the path may be given to a new
    /// group.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memcg_alloc::SlabAlloc = memcg_alloc::SlabAlloc::new();
    /// # use memcg_scope::Group;
    /// # fn main() {
    /// let tenants = Group::new("find-doc-tenants");
    /// let a = tenants.child("a").build();
    /// assert_eq!(Group::find("/find-doc-tenants/a"), Some(a.clone()));
    /// assert!(Group::find("/").unwrap().is_root());
    /// drop(a);
    /// assert_eq!(Group::find("/find-doc-tenants/a"), None);
    /// # }
    /// ```
    pub fn find(path: &str) -> Option<Group> {
        if path == "/" {
            return Some(root());
        }
        crate::bypass(|| {
            let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.find(path)
        })
    }

    /// The live group with this node id, if any.
    pub(crate) fn by_id(id: u64) -> Option<Group> {
        if id == 0 {
            return Some(root());
        }
        crate::bypass(|| {
            let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.get(id)
        })
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
    isolated: bool,
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
            isolated: false,
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

    /// Gives the group's small objects slabs of their own (`true`) instead
    /// of slabs shared with other groups (`false`, the default).
    ///
    /// A slab is a span of one or more 16 KiB slices cut into blocks of one
    /// size class (at most 128 KiB; larger objects always get mappings of
    /// their own). On shared slabs, one group's objects sit next to other
    /// groups' objects in the same slab. An isolated group's never do, so:
    ///
    /// - a use-after-free or a buffer overflow inside the group's code
    ///   cannot read or corrupt another group's objects *in the same slab*,
    ///   nor can another group's bugs reach this group's objects that way;
    /// - the group's memory footprint cannot be inflated by, and cannot
    ///   inflate, another group's fragmentation: the partly filled slabs
    ///   it pins hold only its own objects.
    ///
    /// It is not a sandbox: all groups share one address space, so a wild
    /// pointer or an overflow running past the end of a slab can still
    /// reach any memory.
    ///
    /// The cost is memory: on each thread the group allocates on, every
    /// size class it uses holds at least one slab of its own, most often
    /// partly filled (plus up to [`Tunables::empty_slabs_kept`] empty ones
    /// until they are purged). Use it for a few tenants that need the
    /// separation or that fill whole slabs by themselves, not for
    /// thousands of small ones.
    ///
    /// It is set once, at build, and is not inherited: a child of an
    /// isolated group shares slabs unless it is built isolated too.
    ///
    /// [`Tunables::empty_slabs_kept`]: crate::Tunables::empty_slabs_kept
    pub fn isolated(mut self, isolated: bool) -> Self {
        self.isolated = isolated;
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
    ///
    /// [`BuildError::NameTaken`] means a sibling with this name still has
    /// a handle somewhere. The name is free again once the sibling's last
    /// handle is dropped, even while another thread is still running that
    /// group's death. The check is O(log n) in the number of groups.
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
            if reg.path_taken(&path) {
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
            // Before the group is published: no cache of it exists yet.
            groups::set_isolated(nr, self.isolated);
            let inner = Arc::new(Inner::new(node, Some(self.parent.clone()), &path));
            reg.insert(nr.id, self.parent.node().id, &path, Arc::downgrade(&inner));
            Ok(Group { inner })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry entry's target that needs no allocator node: with no
    /// parent, dropping it does nothing (as for the root).
    fn fake(path: &str) -> Arc<Inner> {
        Arc::new(Inner::new(std::ptr::null_mut(), None, path))
    }

    fn paths(gs: &[Group]) -> Vec<&str> {
        gs.iter().map(|g| g.path()).collect()
    }

    #[test]
    fn dying_holder_gives_its_path_up() {
        let mut reg = Registry::new();
        let old = fake("/x");
        reg.insert(1, 0, "/x", Arc::downgrade(&old));
        assert!(reg.path_taken("/x"));
        // The last handle goes; its death has not reached the registry yet.
        drop(old);
        assert!(!reg.path_taken("/x"));
        assert!(reg.find("/x").is_none());
        let new = fake("/x");
        reg.insert(2, 0, "/x", Arc::downgrade(&new));
        // The dying group's removal arrives late and leaves the newcomer be.
        reg.remove(1, "/x");
        assert!(reg.path_taken("/x"));
        assert!(Arc::ptr_eq(&reg.find("/x").unwrap().inner, &new));
        assert_eq!(paths(&reg.children(0)), ["/x"]);
        reg.remove(2, "/x");
        assert!(!reg.path_taken("/x"));
        assert!(reg.by_id.is_empty() && reg.by_path.is_empty() && reg.children.is_empty());
    }

    #[test]
    fn children_and_live_keep_creation_order() {
        let mut reg = Registry::new();
        let gs: Vec<Arc<Inner>> = ["/a", "/b", "/a/c", "/b/d", "/a/e"]
            .iter()
            .map(|p| fake(p))
            .collect();
        // ids 1..=5; parents: root, root, /a, /b, /a.
        for (i, (g, parent)) in gs.iter().zip([0, 0, 1, 2, 1]).enumerate() {
            reg.insert(i as u64 + 1, parent, &g.path, Arc::downgrade(g));
        }
        assert_eq!(paths(&reg.children(0)), ["/a", "/b"]);
        assert_eq!(paths(&reg.children(1)), ["/a/c", "/a/e"]);
        assert_eq!(paths(&reg.children(2)), ["/b/d"]);
        assert!(reg.children(5).is_empty());
        assert_eq!(paths(&reg.live()), ["/a", "/b", "/a/c", "/b/d", "/a/e"]);
        reg.remove(3, "/a/c");
        assert_eq!(paths(&reg.children(1)), ["/a/e"]);
        assert!(reg.find("/a/c").is_none());
        assert_eq!(reg.find("/a/e").unwrap().path(), "/a/e");
    }
}
