"""Run-time guards around an atom's call: result type validation and result caching.

The engine asks :func:`build` once per compilation which atoms need a guard;
for the usual flow (no annotations asking for validation, nothing cacheable)
the answer is an empty mapping and the run costs nothing more. For a guarded
atom the runtime calls :meth:`Guard.on_begin` when the call is about to be made
and :meth:`Guard.on_result` with its result.

Caching (see :mod:`flowkit.cache`): ``on_begin`` computes the call's
topological key and looks it up; a hit completes the atom with the stored
result without calling ``execute`` (the SUCCESS notification's details carry
``cache_hit: True`` and the key). ``on_result`` stores what a real call returned.

The revert rule: reverting a flow calls ``revert`` only for atoms executed in
this run. An atom completed from the cache is moved to REVERTED without its
``revert`` being called, and the cached entry stays: it was produced by another
run, which owns whatever side effects it had. An atom executed in this run
whose task has a revert of its own loses its entry when that revert is
called (:meth:`Guard.on_revert`): the result no longer stands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowkit import exceptions as exc
from flowkit import typed
from flowkit._utils.class_caches import make_room
from flowkit._utils.lazy_logging import module_logger
from flowkit.atom import check_switch

# The cache modules (hashing, stores) are imported only by a run that caches:
# every other first run of a process would pay for them.
if TYPE_CHECKING:
    from flowkit.cache._stores import CacheStore

__all__ = ["CALL_KEY", "Guard", "build", "guard_nodes"]

#: The atom metadata key of a cached atom's last call: ``{"key": ..., "hit": bool}``.
CALL_KEY = "cache_call"

_LOG = module_logger(__name__)


class Guard:
    """What the runtime does around one atom's call (validation, caching)."""

    __slots__ = (
        "_all",
        "_coerce",
        "_custom",
        "_identity",
        "_node",
        "_revive",
        "_store",
        "_stored",
        "_strict",
        "_undoes",
        "_unread",
        "_validate",
        "_warned",
        "hit",
        "key",
    )

    def __init__(
        self,
        node: Any,
        validate: Callable[[Any], Any] | None,
        store: CacheStore | None,
        everyone: Mapping[int, Guard],
    ) -> None:
        self._node = node
        self._validate = validate
        #: Arguments typed with pydantic models: a mapping (from JSON: a resumed
        #: run's stored result, a worker's reply, the cache) becomes the model.
        self._coerce = typed.model_inputs(node.atom)
        self._store = store
        self._all = everyone
        atom = node.atom
        self._identity = None
        #: Whether the atom's revert is code of its own (undoing the call's work).
        self._undoes = False
        #: Whether a hit's value may need making into what the atom declares (an enum, a model).
        self._revive = False
        #: Whether an input no key represents fails the atom (``cache_strict``) rather than
        #: running it uncached.
        self._strict = getattr(atom, "cache_strict", False) is True
        #: Whether this run said that the atom runs uncached (it says so once per run).
        self._warned = False
        #: Whether this run said that the store failed a lookup of the atom's (once per run).
        self._unread = False
        if store is not None:
            from flowkit.cache import _keys

            self._identity = _keys.key_bytes(_keys.task_identity(atom))
            self._undoes = _undoes(atom)
            self._revive = typed.revives(atom)
        #: Whether the current run stored this atom's result under ``key``.
        self._stored = False
        hook = getattr(atom, "cache_key", None)
        self._custom: Callable[[dict[str, Any]], Any] | None = hook if callable(hook) else None
        #: The key of this atom's call in the current run (None: not cached).
        self.key: str | None = None
        #: Whether the current run took this atom's result from the cache.
        self.hit = False

    @property
    def caches(self) -> bool:
        return self._store is not None

    @property
    def undoes(self) -> bool:
        """Whether this atom's revert removes its entry (see :meth:`on_revert`).

        Its key then does not stand for one result: after a revert the call
        runs again under the same key and may return another value, so a
        downstream key counts that value beside this key.
        """
        return self._undoes

    def begin_run(self, meta: Mapping[str, Any] | None = None) -> None:
        """A run of the engine starts: what the last one said, this one says again.

        Args:
            meta: the atom's stored metadata. A run resumed in another process
                takes from it how the atom's last call went (:meth:`remember`),
                so that it does not call the revert of a result the cache gave,
                and does remove the entry of a call whose revert it calls.
        """
        self._warned = False
        self._unread = False
        call = meta.get(CALL_KEY) if meta is not None and self._store is not None else None
        if isinstance(call, dict) and isinstance(call.get("key"), str):
            self.key, self.hit = call["key"], call.get("hit") is True
            self._stored = not self.hit

    def remember(self, meta: dict[str, Any]) -> None:
        """Keep how this call went in the atom's metadata, written with its SUCCESS.

        Its key, and whether the result came from the cache; nothing when the
        call had no key (it ran uncached) or stored nothing.
        """
        if self._store is None:
            return
        if self.key is not None and (self.hit or self._stored):
            meta[CALL_KEY] = {"key": self.key, "hit": self.hit}
        else:
            meta.pop(CALL_KEY, None)

    def on_begin(self, kwargs: dict[str, Any], source_of: Callable[[Any], int]) -> tuple[bool, Any]:
        """Before ``execute``: ``(True, result)`` on a cache hit, else ``(False, None)``.

        ``source_of(plan)`` says which node's result gave an argument (-1: an
        injected value), as the runtime fetched it.

        An input no cache key represents makes it run uncached, said in one
        WARNING per run naming the atom and the argument (as Prefect runs such
        a task: a cache is there to save time, and a flow that ran before the
        task was marked cacheable should not start failing for it). A task
        that would rather fail sets ``cache_strict = True``. A lookup the store
        fails (its server restarting) runs the call uncached too, also said
        once per run: an outage of the cache must not revert the flow.

        Raises:
            Uncacheable: (``cache_strict`` only) an input no cache key
                represents, naming the atom and the argument; it fails the
                atom before its call.
        """
        self.hit = False
        self.key = None
        self._stored = False
        if self._coerce is not None:
            typed.coerce_inputs(self._node.name, self._coerce, kwargs)
        if self._store is None:
            return False, None
        from flowkit.cache import _keys

        try:
            key = self._key(kwargs, source_of)
        except _keys.Uncacheable as err:
            if self._strict:
                raise _keys.Uncacheable(
                    f"atom '{self._node.name}' is cacheable, but its {err}; give the task a "
                    "cache_key(inputs) that says what identifies the call, or an input a key "
                    "represents (doc/caching.rst, 'Which inputs are equal')",
                    atom=self._node.name,
                    argument=err.argument,
                ) from err
            if not self._warned:
                # Said at DEBUG (as it once was), a task marked cacheable ran at every
                # run without a word; said at every call, a loop would flood the log.
                self._warned = True
                _LOG.warning(
                    "atom '%s' is cacheable, but its %s; it runs uncached. Give the task a "
                    "cache_key(inputs) that says what identifies the call, or make the input one "
                    "a key represents (doc/caching.rst, 'Which inputs are equal'); "
                    "cache_strict = True makes this an error",
                    self._node.name,
                    err,
                )
            return False, None
        if key is None:
            return False, None
        try:
            text = self._store.get(key)
        except exc.StorageFailure as err:
            # The store's server restarting, or a dropped connection: a cache is there to
            # save time, so the call runs uncached (and is not stored: the store is away),
            # as when a write fails, rather than failing the atom and reverting the flow.
            if not self._unread:
                self._unread = True
                _LOG.warning("atom '%s' runs uncached: %s", self._node.name, err.message)
            return False, None
        self.key = key
        if text is None:
            return False, None
        try:
            value = _keys.decode_value(text)
        except _keys.OldEntry:
            # Written before results were tagged: its form is not the value's.
            _LOG.debug(
                "atom '%s': the entry of key %s is in an earlier form; running it", self._node.name, key
            )
            return False, None
        except (ValueError, TypeError) as err:
            # A damaged entry (a file edited, a row written by something else) is
            # a miss: the call runs and its result replaces the entry, rather than
            # a JSON error naming neither the atom nor the cache failing the flow.
            from flowkit.persistence.backends._urls import mask_url

            _LOG.warning(
                "atom '%s': the entry of key %s in cache store %s is not readable (%s); running it",
                self._node.name,
                key,
                mask_url(self._store.url),
                err,
            )
            return False, None
        if self._revive:  # what JSON cannot tell (a model, an enum member), as the atom declares it
            value = typed.revive_result(self._node.atom, value)
        if self._validate is not None:
            try:
                value = self._validate(value)
            except exc.InvalidResult as err:
                # Stored before the task's result type changed, or by a run that did
                # not validate: failing the atom would blame its call for a value it
                # never returned, at every run until the cache is cleared. A miss, as
                # a damaged entry is: the call runs and its result replaces the entry.
                from flowkit.persistence.backends._urls import mask_url

                _LOG.warning(
                    "atom '%s': the entry of key %s in cache store %s does not fit the declared "
                    "result (%s); running it",
                    self._node.name,
                    key,
                    mask_url(self._store.url),
                    err.__cause__ or err,
                )
                return False, None
        self.hit = True
        return True, value

    def _key(self, kwargs: dict[str, Any], source_of: Callable[[Any], int]) -> str | None:
        from flowkit.cache import _keys

        inputs: dict[str, Any] = {}
        guards = self._all
        for plan in self._node.exec_args:
            if plan.arg not in kwargs:
                continue
            # The node the value came from, not the planned provider: an injected
            # value (or the store's) replaces its result, and a skipped one gives way.
            source = source_of(plan) if plan.provider >= 0 else -1
            upstream = guards.get(source) if source >= 0 else None
            if upstream is not None and upstream.key is not None:
                # An upstream whose revert removes its entry may give a new result
                # under the same key (another volume): its value counts too.
                item = plan.key if source == plan.provider else upstream._node.atom.save_as[plan.symbol]
                inputs[plan.arg] = _keys.UpstreamKey(upstream.key, item, kwargs[plan.arg], upstream.undoes)
            else:
                inputs[plan.arg] = kwargs[plan.arg]
        custom = None
        if self._custom is not None:
            custom = self._custom(dict(kwargs))
            if custom is None:
                return None
        assert self._identity is not None
        return _keys.keyed(self._identity, inputs, custom)

    def spawned(self) -> None:
        """The call returned a sub-flow: neither validate nor cache it, nor key others by it.

        What a spawner returns in the end is what its sub-flow's tasks return,
        which its key (its code and inputs) does not name: a hit would give no
        sub-flow and a None result, and a downstream key built on the
        spawner's would survive a change in the spawned tasks. So the call has
        no key, and a downstream cacheable atom's key counts the collected
        result by its value.
        """
        self.key = None
        self.hit = False

    def on_result(self, value: Any) -> Any:
        """After a call (or a hit): the validated result; stores a real call's result.

        Raises:
            InvalidResult: the result is not of the declared type.
        """
        if self._validate is not None and not self.hit:  # a hit was validated as it was read
            value = self._validate(value)
        if self._store is not None and self.key is not None and not self.hit:
            from flowkit.cache import _keys

            try:
                text = _keys.encode_value(value, plain_enums=self._revive)
                if self._revive:
                    self._check_revived(text, value)
                self._store.put(self.key, text)
                self._stored = True
            except _keys.Uncacheable as err:
                # Said at DEBUG, a task marked cacheable ran at every run without a word.
                _LOG.warning("result of atom '%s' is not cached: %s", self._node.name, err)
            except Exception:  # a cache that cannot be written must not fail the flow
                _LOG.warning("could not cache the result of atom '%s'", self._node.name, exc_info=True)
        return value

    def _check_revived(self, text: str, value: Any) -> None:
        """Refuse to store a result that a hit would not give back equal to ``value``.

        The atom declares a model or an enum in its result, which a hit makes
        again from what JSON kept. What that cannot make again must not be
        stored: a model's ``SecretStr`` is dumped as ``"**********"``, which a
        hit handed on as the password; a plain enum member the annotation does
        not cover (``-> tuple[Level, Any]``'s second item) would come back as
        its value, not equal to the member.

        Raises:
            Uncacheable: the hit would give another value.
        """
        from flowkit.cache import _keys

        try:
            same = bool(typed.revive_result(self._node.atom, _keys.decode_value(text)) == value)
        except Exception:  # a value whose == fails: take no chance
            same = False
        if not same:
            raise _keys.Uncacheable(
                "it would not come back from the cache equal to what the call returned (a model "
                "field its JSON dump hides, such as a SecretStr, or an enum member the result's "
                "annotation does not declare)"
            )

    def on_revert(self) -> None:
        """Before the revert of a call this run made: remove the entry it stored.

        The revert undoes what the call did (the volume it made is deleted), so
        its result no longer stands: a retry of the scope, or the next run, must
        execute it again rather than be handed the id of a deleted volume. An
        atom without a revert of its own undoes nothing, and keeps its entry.
        """
        if not (self._stored and self._undoes):
            return
        assert self._store is not None and self.key is not None
        self._stored = False
        try:
            self._store.delete(self.key)
        except Exception:  # the flow reverts all the same; the entry may be served again
            _LOG.warning(
                "could not remove the cached result of atom '%s', which is being reverted",
                self._node.name,
                exc_info=True,
            )

    def annotate(self, details: dict[str, Any]) -> None:
        """Add the cache outcome to a notification's details."""
        if self._store is not None:
            details["cache_hit"] = self.hit
            details["cache_key"] = self.key


def _undoes(atom: Any) -> bool:
    """Whether reverting ``atom`` runs code of its own, not the default that undoes nothing."""
    hook = getattr(type(atom), "__flowkit_cache_identity__", None)
    if hook is not None:  # an adapter running another task: that task's revert
        return _undoes(hook(atom)[0])
    by_class = _UNDOES.get(type(atom))
    if by_class is None:
        make_room(_UNDOES)
        by_class = _UNDOES[type(atom)] = _undoes_by_class(type(atom))
    if by_class == "functor":
        return atom._revert is not None
    return by_class == "yes"


#: Task class -> "yes", "no" or "functor" (the instance's function decides): what
#: _undoes asks per atom, looked up once per class (ABC isinstance checks are slow).
_UNDOES: dict[type, str] = {}


def _undoes_by_class(cls: type) -> str:
    from flowkit.atom import Atom
    from flowkit.task import FunctorTask, MapFunctorTask, ReduceFunctorTask

    if issubclass(cls, FunctorTask | MapFunctorTask | ReduceFunctorTask):
        return "functor"
    return "no" if getattr(cls, "revert", None) is Atom.revert else "yes"


#: A task's caching switches: each True, False or unset.
_SWITCHES = ("cache", "cache_strict", "cache_code")


def _check_switches(atom: Any) -> None:
    """Refuse a caching switch that is not a bool, naming the atom (a run with a cache only).

    They are read as ``is True`` (``cache_code`` by truth): ``cache = 1`` or
    ``"yes"`` would run uncached without a word, ``cache_strict = "yes"``
    would not be strict. Unset or None is off.

    Raises:
        InvalidAtomOption: naming the atom, the option and the value.
    """
    for option in _SWITCHES:
        check_switch(atom.name, option, getattr(atom, option, None), "doc/caching.rst")


def build(
    compilation: Any, options: Mapping[str, Any], classes: Iterable[type] | None = None
) -> dict[int, Guard]:
    """The guards a compiled flow needs, by node index (empty when none does).

    Args:
        compilation: the engine's compilation.
        options: the engine options; ``cache`` (a URL or store) and
            ``validate_types`` (True/False; default: pydantic results only).
        classes: the classes of the compilation's atoms, if the caller has
            them already (the engine does); else they are collected here.

    Raises:
        InvalidEngineOption: a bad ``cache`` value.
        InvalidAtomOption: (with a cache) a task's ``cache``, ``cache_strict`` or
            ``cache_code`` that is not a bool.
    """
    target = options.get("cache")
    store = None
    if target is not None:
        from flowkit.cache._stores import open_store

        store = open_store(target)
    guards: dict[int, Guard] = {}
    guards.update(guard_nodes(compilation.atoms, options.get("validate_types"), store, guards, classes))
    return guards


def guard_nodes(
    nodes: Sequence[Any],
    default: bool | None,
    store: CacheStore | None,
    everyone: Mapping[int, Guard],
    classes: Iterable[type] | None = None,
) -> dict[int, Guard]:
    """The guards ``nodes`` need, by node index: validation and model arguments, and caching with a store.

    Also what atoms spliced into a running flow (:mod:`flowkit.dynamic`) need,
    without a store: spawned atoms are never cached (``doc/dynamic.rst``), but
    their results are validated and their model arguments made into models as
    those of atoms loaded up front are.

    Args:
        nodes: the atoms' compiled nodes.
        default: the engine's ``validate_types`` option.
        store: the cache store, or None.
        everyone: every guard of the run, which the new ones read (upstream keys).
        classes: the classes of ``nodes``' atoms, if the caller has them already.
    """
    guards: dict[int, Guard] = {}
    if store is None:
        # Only validation can apply: only atoms whose class declares something.
        if classes is None:
            classes = {type(node.atom) for node in nodes}
        declaring = typed.classes_declaring
        suspects = declaring(classes, inputs=False) | declaring(classes, inputs=True)
        if not suspects:
            return guards
        nodes = [node for node in nodes if type(node.atom) in suspects]
    # Atoms of a class that shares one contract need no guard once one of them
    # needs none (without a cache), unless an atom sets ``validate_types`` itself:
    # a 100,000-atom flow of annotated tasks pays one lookup per atom.
    unguarded: set[type] = set()
    for node in nodes:
        if node.kind != 0:  # retries decide; they are never cached or validated
            continue
        atom = node.atom
        if store is not None:
            _check_switches(atom)
        cls = type(atom)
        # Set on the atom itself (not inherited)? Compared by identity rather than by
        # looking in ``atom.__dict__``, which would make CPython build a dict per atom.
        own = getattr(atom, "validate_types", None) is not getattr(cls, "validate_types", None)
        if cls in unguarded and not own:
            continue
        validate = typed.validator_for(atom, default)
        cached = store if store is not None and getattr(atom, "cache", False) is True else None
        if validate is not None or cached is not None or typed.model_inputs(atom) is not None:
            guards[node.index] = Guard(node, validate, cached, everyone)
        elif store is None and not own and typed.shares_contract(cls):
            unguarded.add(cls)
    return guards
