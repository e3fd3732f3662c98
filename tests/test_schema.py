"""semantics §1 (schema) and 12.1 (typed states, groups), through the public API only."""

from __future__ import annotations

import attrs
import pytest

import asyncmachine_trio as am

NORELS = {"A": am.State(), "B": am.State(), "C": am.State(), "D": am.State()}


class Recorder(am.Tracer):
    """Records tracer hook calls as (hook, detail) tuples."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def verify_states(self, machine: am.Machine) -> None:
        self.calls.append(("verify_states", tuple(machine.state_names)))

    def schema_change(self, machine: am.Machine, old_schema: dict[str, am.State]) -> None:
        self.calls.append(("schema_change", tuple(old_schema)))


# ----- 1.1 State: frozen, converters


def test_state_defaults_are_unspecified() -> None:
    s = am.State()
    assert s.auto is False
    assert s.multi is False
    assert s.require is None
    assert s.add is None
    assert s.remove is None
    assert s.after is None
    assert s.tags == ()


def test_state_is_frozen() -> None:
    s = am.State(auto=True)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.auto = False  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        s.require = ("B",)  # type: ignore[misc]


def test_state_converts_lists_to_tuples_keeping_order() -> None:
    s = am.State(require=["C", "B"], add=["B", "A"], remove=["D"], after=[], tags=["t1", "t2"])
    assert s.require == ("C", "B")
    assert s.add == ("B", "A")
    assert s.remove == ("D",)
    assert s.after == ()  # an empty list is "given", not None
    assert s.tags == ("t1", "t2")


def test_state_equality_and_hash() -> None:
    assert am.State(add=["A"]) == am.State(add=("A",))
    assert am.State(add=["A"]) != am.State(add=["A"], multi=True)
    assert am.State(after=()) != am.State()
    assert hash(am.State(add=["A"])) == hash(am.State(add=("A",)))


@pytest.mark.parametrize("field", ["require", "add", "remove", "after"])
def test_state_bare_str_relation_is_schema_error(field: str) -> None:
    with pytest.raises(am.SchemaError):
        am.State(**{field: "B"})


@pytest.mark.parametrize("field", ["require", "add", "remove", "after"])
def test_state_non_str_relation_entry_is_schema_error(field: str) -> None:
    with pytest.raises(am.SchemaError):
        am.State(**{field: ["B", 1]})


def test_state_bare_str_tags_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.State(tags="foo")


def test_schema_error_is_async_machine_error() -> None:
    assert issubclass(am.SchemaError, am.AsyncMachineError)
    assert issubclass(am.AsyncMachineError, Exception)


# ----- dict-of-dict schemas


def test_dict_of_dict_schema() -> None:
    mach = am.Machine(
        {"A": {"require": ["B"], "auto": True}, "B": {}, "C": {"multi": True, "tags": ["x"]}},
        id="m",
    )
    assert mach.state_names == ("A", "B", "C", "Exception")
    schema = mach.schema
    assert schema["A"] == am.State(auto=True, require=("B",))
    assert schema["B"] == am.State()
    assert schema["C"] == am.State(multi=True, tags=("x",))
    assert schema["Exception"] == am.State(multi=True)
    assert mach.add1("A") is am.Result.CANCELED
    assert mach.add(["B", "A"]) is am.Result.EXECUTED
    assert mach.active_states() == ["B", "A"]


def test_mixed_state_and_dict_schema() -> None:
    mach = am.Machine({"A": am.State(add=["B"]), "B": {"multi": True}}, id="m")
    assert mach.schema["B"].multi is True
    mach.add1("A")
    assert mach.active_states() == ["A", "B"]


def test_dict_schema_unknown_field_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({"A": {"requires": ["B"]}, "B": {}})


def test_dict_schema_bare_str_relation_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({"A": {"require": "B"}, "B": {}})


def test_schema_wrong_value_type_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({"A": ["B"]})


def test_schema_not_a_mapping_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine(["A", "B"])


def test_schema_any_is_reserved() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({"Any": am.State()})


def test_schema_empty_name_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):
        am.Machine({"": am.State()})


# ----- 12.1 typed states


class FileStates(am.States):
    Downloading = am.State(remove=("Downloaded",))
    Downloaded = am.State(remove=("Downloading",))


class MoreFileStates(FileStates):
    Uploading = am.State(require=(FileStates.Downloaded,))


def test_states_attributes_read_back_as_names() -> None:
    assert FileStates.Downloading == "Downloading"
    assert type(FileStates.Downloading) is str
    assert MoreFileStates.Downloaded == "Downloaded"
    assert MoreFileStates.Uploading == "Uploading"


def test_states_schema_and_names() -> None:
    assert FileStates.schema() == {
        "Downloading": am.State(remove=("Downloaded",)),
        "Downloaded": am.State(remove=("Downloading",)),
    }
    assert FileStates.names() == ["Downloading", "Downloaded"]
    # parents first
    assert MoreFileStates.names() == ["Downloading", "Downloaded", "Uploading"]
    assert list(MoreFileStates.schema()) == ["Downloading", "Downloaded", "Uploading"]
    assert MoreFileStates.schema()["Uploading"] == am.State(require=("Downloaded",))


def test_states_schema_is_a_copy() -> None:
    s = FileStates.schema()
    s["X"] = am.State()
    assert "X" not in FileStates.schema()
    n = FileStates.names()
    n.append("X")
    assert FileStates.names() == ["Downloading", "Downloaded"]


def test_states_child_override_keeps_parent_position() -> None:
    class P(am.States):
        A = am.State()
        B = am.State()

    class C(P):
        A = am.State(multi=True)
        D = am.State()

    assert C.names() == ["A", "B", "D"]
    assert C.schema()["A"] == am.State(multi=True)
    assert P.schema()["A"] == am.State()


def test_states_multiple_inheritance_follows_base_order() -> None:
    # Go: struct{ *P1; *P2; D } gives names P1's, P2's, then own (semantics §12.1)
    class P1(am.States):
        A = am.State()

    class P2(am.States):
        B = am.State()

    class C(P1, P2):
        D = am.State()

    assert C.names() == ["A", "B", "D"]


def test_machine_from_states_class_uses_definition_order() -> None:
    mach = am.Machine(MoreFileStates, id="m")
    assert mach.state_names == ("Downloading", "Downloaded", "Uploading", "Exception")
    mach.add1(MoreFileStates.Downloaded)
    mach.add1(MoreFileStates.Uploading)
    assert mach.active_states() == ["Downloaded", "Uploading"]
    mach.add1(MoreFileStates.Downloading)
    # Downloading removes Downloaded, Uploading loses its requirement
    assert mach.active_states() == ["Downloading"]


def test_states_private_name_is_schema_error() -> None:
    with pytest.raises(am.SchemaError):

        class Bad(am.States):
            _Hidden = am.State()


class BaseStates(am.States):
    Exception = am.State(multi=True)


class Groups0(BaseStates):
    State00 = am.State()
    State01 = am.State()


class Groups1(Groups0):
    State10 = am.State()
    State11 = am.State()


class Groups2(Groups1):
    State20 = am.State()
    State21 = am.State()


def test_states_groups_test_groups() -> None:
    # semantics §12.1 TestGroups. The port has no StatesBase, so the user's base class
    # (declaring Exception) is a group too (choice: every States ancestor counts).
    assert Groups2.names() == [
        "Exception",
        "State00",
        "State01",
        "State10",
        "State11",
        "State20",
        "State21",
    ]
    groups, order = Groups2.state_groups()
    assert order == ["self", "Groups1", "Groups0", "BaseStates"]
    assert groups == {
        "self": [5, 6],
        "Groups1": [3, 4],
        "Groups0": [1, 2],
        "BaseStates": [0],
    }


def test_state_groups_class() -> None:
    class BaseGroups(am.StateGroups):
        BaseGroup0 = [Groups2.State10, Groups2.State11]
        BaseGroup1 = [Groups2.State21, Groups2.State10]

    class G(BaseGroups):
        Group0 = [Groups2.State20, Groups2.State21]
        GroupTestNameBar = [Groups2.State11, Groups2.State20]

    assert G.Group0 == ["State20", "State21"]
    assert G.groups() == {
        "BaseGroup0": ["State10", "State11"],
        "BaseGroup1": ["State21", "State10"],
        "Group0": ["State20", "State21"],
        "GroupTestNameBar": ["State11", "State20"],
    }
    assert G.groups(inherited=False) == {
        "Group0": ["State20", "State21"],
        "GroupTestNameBar": ["State11", "State20"],
    }

    # machine groups: own groups of the record, then the typed-states groups
    mach = am.Machine(Groups2, id="g")
    assert mach.state_names[0] == "Exception"
    mach.set_groups(G, Groups2)
    groups, order = mach.groups()
    assert order == ["Group0", "GroupTestNameBar", "self", "Groups1", "Groups0", "BaseStates"]
    assert groups == {
        "Group0": [5, 6],
        "GroupTestNameBar": [4, 5],
        "self": [5, 6],
        "Groups1": [3, 4],
        "Groups0": [1, 2],
        "BaseStates": [0],
    }


def test_set_groups_plain_mapping() -> None:
    mach = am.Machine(NORELS, id="g")
    mach.set_groups({"Two": ["B", "D"], "Unknown": ["X"]})
    assert mach.groups() == ({"Two": [1, 3], "Unknown": [-1]}, ["Two", "Unknown"])


# ----- 1.4 parse_schema


def test_parse_schema_clean_schema_has_no_error() -> None:
    parsed, err = am.parse_schema(NORELS)
    assert err is None
    assert parsed == NORELS
    assert list(parsed) == ["A", "B", "C", "D"]  # no implicit Exception here


def test_parse_schema_does_not_mutate_input() -> None:
    src = {"A": am.State(remove=["A", "B"]), "B": am.State()}
    am.parse_schema(src)
    assert src["A"].remove == ("A", "B")


def test_parse_rule1_self_removed_from_remove() -> None:
    parsed, err = am.parse_schema({"A": am.State(remove=["A", "B"]), "B": am.State()})
    assert err is None
    assert parsed["A"].remove == ("B",)


def test_parse_rule1_only_first_occurrence_removed() -> None:
    parsed, _ = am.parse_schema({"A": am.State(remove=["A", "A", "B"]), "B": am.State()})
    assert parsed["A"].remove == ("A", "B")


def test_parse_rule1_empty_list_stays_present() -> None:
    parsed, _ = am.parse_schema({"A": am.State(remove=["A"])})
    assert parsed["A"].remove == ()


def test_parse_rule2_add_wins_over_remove() -> None:
    parsed, err = am.parse_schema(
        {"A": am.State(add=["B"], remove=["B", "C"]), "B": am.State(), "C": am.State()}
    )
    assert err is None
    assert parsed["A"].add == ("B",)
    assert parsed["A"].remove == ("C",)


def test_parse_rule2_unknown_add_dropped() -> None:
    parsed, _ = am.parse_schema({"A": am.State(add=["X", "B", "Y"]), "B": am.State()})
    assert parsed["A"].add == ("B",)


def test_parse_rule2_unknown_add_kept_when_also_in_remove() -> None:
    # the entry is deleted from Remove instead, so the unknown name stays in Add
    parsed, _ = am.parse_schema({"A": am.State(add=["X"], remove=["X"])})
    assert parsed["A"].add == ("X",)
    assert parsed["A"].remove == ()


def test_parse_rule3_self_removed_from_after() -> None:
    parsed, err = am.parse_schema({"A": am.State(after=["A"]), "B": am.State(after=["A"])})
    assert err is None
    assert parsed["A"].after == ()
    assert parsed["B"].after == ("A",)


def test_parse_rule4_require_remove_conflict() -> None:
    parsed, err = am.parse_schema({"A": am.State(require=["B"], remove=["B"]), "B": am.State()})
    assert isinstance(err, am.SchemaError)
    assert str(err) == "schema error: require-remove conflict for A to B"
    # parsing still completes
    assert parsed["A"].require == ("B",)
    assert parsed["A"].remove == ("B",)


def test_parse_rule4_conflicts_are_joined() -> None:
    _, err = am.parse_schema(
        {
            "A": am.State(require=["B", "C"], remove=["C", "B"]),
            "B": am.State(),
            "C": am.State(require=["A"], remove=["A"]),
        }
    )
    assert isinstance(err, am.SchemaError)
    assert str(err).splitlines() == [
        "schema error: require-remove conflict for A to B",
        "schema error: require-remove conflict for A to C",
        "schema error: require-remove conflict for C to A",
    ]


def test_parse_rule4_add_clears_conflict() -> None:
    # rule 2 runs first: B in Add leaves Remove, so no conflict is left
    _, err = am.parse_schema({"A": am.State(require=["B"], add=["B"], remove=["B"]), "B": {}})
    assert err is None


def test_parse_rule5_unknown_remove_and_after_dropped() -> None:
    parsed, err = am.parse_schema(
        {"A": am.State(remove=["X", "B", "Y"], after=["Z", "B"]), "B": am.State()}
    )
    assert err is None
    assert parsed["A"].remove == ("B",)
    assert parsed["A"].after == ("B",)


def test_parse_rule4_unknown_required_removed_is_still_a_conflict() -> None:
    # the conflict check (4) runs before unknown Remove entries are dropped (5)
    parsed, err = am.parse_schema({"A": am.State(require=["X"], remove=["X"])})
    assert str(err) == "schema error: require-remove conflict for A to X"
    assert parsed["A"].remove == ()


def test_parse_rule6_unknown_require_kept() -> None:
    parsed, err = am.parse_schema({"A": am.State(require=["X"])})
    assert err is None
    assert parsed["A"].require == ("X",)
    mach = am.Machine({"A": am.State(require=["X"])}, id="m", strict_schema=False)
    assert mach.add1("A") is am.Result.CANCELED
    assert mach.active_states() == []


def test_parse_undeclared_exception_quirk() -> None:
    # semantics §1.4 / 14 #14: known excludes the implicit Exception
    schema = {"A": am.State(add=["Exception"], remove=["Exception"], require=["Exception"])}
    parsed, err = am.parse_schema(schema)
    # rule 2: Exception is in Remove too, so it leaves Remove and stays in Add
    assert err is None
    assert parsed["A"].require == ("Exception",)
    assert parsed["A"].add == ("Exception",)
    assert parsed["A"].remove == ()
    parsed, _ = am.parse_schema({"A": am.State(add=["Exception"])})
    assert parsed["A"].add == ()
    parsed, _ = am.parse_schema({"A": am.State(remove=["Exception"])})
    assert parsed["A"].remove == ()


def test_parse_declared_exception_relations_kept() -> None:
    parsed, _ = am.parse_schema(
        {"A": am.State(add=["Exception"]), "B": am.State(remove=["Exception"]), "Exception": {}}
    )
    assert parsed["A"].add == ("Exception",)
    assert parsed["B"].remove == ("Exception",)


def test_machine_undeclared_exception_remove_has_no_effect() -> None:
    mach = am.Machine({"A": am.State(remove=["Exception"])}, id="m")
    assert mach.schema["A"].remove == ()
    mach.add_err(ValueError("boom"))
    mach.add1("A")
    assert mach.active_states() == ["A", "Exception"]


def test_machine_declared_exception_remove_applies() -> None:
    mach = am.Machine(
        {"A": am.State(remove=["Exception"]), "Exception": am.State(multi=True)}, id="m"
    )
    mach.add_err(ValueError("boom"))
    assert mach.is_err()
    mach.add1("A")
    assert mach.active_states() == ["A"]


def test_parse_schema_accepts_states_class_and_dicts() -> None:
    parsed, err = am.parse_schema(FileStates)
    assert err is None
    assert list(parsed) == ["Downloading", "Downloaded"]
    parsed, err = am.parse_schema({"A": {"after": ["A"]}})
    assert err is None
    assert parsed["A"] == am.State(after=())


def test_constructor_with_schema_error_starts_in_exception() -> None:
    mach = am.Machine(
        {"A": am.State(require=["B"], remove=["B"]), "B": am.State()}, id="m", strict_schema=False
    )
    assert mach.active_states() == ["Exception"]
    assert mach.is_err()
    assert isinstance(mach.err, am.SchemaError)
    assert str(mach.err) == "schema error: require-remove conflict for A to B"
    assert mach.clock() == {"A": 0, "B": 0, "Exception": 1}


def test_first_bind_re_adds_schema_error() -> None:
    mach = am.Machine(
        {"A": am.State(require=["B"], remove=["B"]), "B": am.State()}, id="m", strict_schema=False
    )
    err = mach.err
    seen: list[object] = []

    class H:
        def exception_state(self, e: am.Event) -> None:
            a = am.parse_args(e.args, am.AException)
            seen.append(a.err if a else None)

    mach.bind_handlers(H())
    assert seen == [err]
    assert mach.tick("Exception") == 3
    # only the first binding does it
    mach.bind_handlers(H())
    assert seen == [err]
    assert mach.tick("Exception") == 3


def test_first_bind_without_error_adds_nothing() -> None:
    mach = am.Machine(NORELS, id="m")
    mach.bind_handlers(object())
    assert mach.clock()["Exception"] == 0
    assert mach.err is None


# ----- 1.5 state order


def test_state_order_implicit_exception_last() -> None:
    mach = am.Machine({"Wet": {}, "Dry": {}, "Water": {}}, id="m")
    assert mach.state_names == ("Wet", "Dry", "Water", "Exception")
    assert list(mach.clock()) == ["Wet", "Dry", "Water", "Exception"]
    assert mach.string_all() == "() [Wet:0 Dry:0 Water:0 Exception:0]"


def test_state_order_declared_exception_keeps_place() -> None:
    mach = am.Machine({"B": {}, "Exception": {}, "A": {}}, id="m")
    assert mach.state_names == ("B", "Exception", "A")
    # the user's definition is used as is (non-Multi here)
    assert mach.schema["Exception"] == am.State()


def test_state_order_never_sorted() -> None:
    mach = am.Machine({"D": {}, "C": {}, "B": {}, "A": {}}, id="m")
    assert mach.state_names == ("D", "C", "B", "A", "Exception")
    assert mach.index(["A", "D", "X"]) == [3, 0, -1]
    assert mach.index1("Exception") == 4
    mach.add(["A", "D"])
    assert mach.string() == "(D:1 A:1)"
    assert list(mach.time()) == [1, 0, 0, 1, 0]


def test_state_names_is_a_tuple_copy() -> None:
    mach = am.Machine(NORELS, id="m")
    assert isinstance(mach.state_names, tuple)
    schema = mach.schema
    schema["X"] = am.State()
    assert "X" not in mach.schema
    assert mach.schema_ver == 5


# ----- 1.5 verify_states


def test_verify_states_go_cases_fail() -> None:
    mach = am.Machine(NORELS, id="vs")
    mach.set(["A", "B"])
    with pytest.raises(am.SchemaError) as info:
        mach.verify_states(["A", "A", "B", "Err"])
    assert str(info.value) == "state Err not defined in schema for vs"
    with pytest.raises(am.SchemaError) as info:
        mach.verify_states(["A", "A"])
    assert str(info.value) == (
        "error: trying to verify less states than registered for vs; missing: B C D Exception"
    )
    with pytest.raises(am.SchemaError):
        mach.verify_states(["A", "B"])
    assert mach.states_verified is False
    assert mach.state_names == ("A", "B", "C", "D", "Exception")


def test_verify_states_unknown_names_joined() -> None:
    mach = am.Machine(NORELS, id="vs")
    with pytest.raises(am.SchemaError) as info:
        mach.verify_states(["X", "A", "B", "C", "D", "Exception", "Y"])
    assert str(info.value).splitlines() == [
        "state X not defined in schema for vs",
        "state Y not defined in schema for vs",
    ]


def test_verify_states_duplicates_cannot_hide_missing() -> None:
    # Go quirk #25: port checks the deduplicated list
    mach = am.Machine(NORELS, id="vs")
    with pytest.raises(am.SchemaError) as info:
        mach.verify_states(["A", "A", "B", "C", "D"])
    assert str(info.value).endswith("missing: Exception")


def test_verify_states_success_reorders() -> None:
    tracer = Recorder()
    mach = am.Machine(NORELS, id="vs", tracers=[tracer])
    mach.set(["A", "B"])
    mach.verify_states(["Exception", "D", "B", "B", "C", "A"])
    assert mach.states_verified is True
    assert mach.state_names == ("Exception", "D", "B", "C", "A")
    assert mach.string() == "(B:1 A:1)"
    assert mach.string_all() == "(B:1 A:1) [Exception:0 D:0 C:0]"
    assert list(mach.time()) == [0, 0, 1, 0, 1]
    assert list(mach.clock()) == ["Exception", "D", "B", "C", "A"]
    assert mach.index1("A") == 4
    assert mach.inspect().splitlines()[0] == "0 Exception"
    assert tracer.calls == [("verify_states", ("Exception", "D", "B", "C", "A"))]
    # the active list keeps its own (resolver) order
    assert mach.active_states() == ["A", "B"]


def test_verify_states_bare_str_is_argument_error() -> None:
    mach = am.Machine(NORELS, id="vs")
    with pytest.raises(am.ArgumentError):
        mach.verify_states("ABCD")


def test_names_kwarg_verifies_and_raises() -> None:
    mach = am.Machine(NORELS, id="n", names=["D", "C", "B", "A", "Exception"])
    assert mach.states_verified is True
    assert mach.state_names == ("D", "C", "B", "A", "Exception")
    with pytest.raises(am.SchemaError):
        am.Machine(NORELS, id="n", names=["A", "B"])


# ----- 1.6 set_schema


def test_set_schema_test_set_states() -> None:
    tracer = Recorder()
    mach = am.Machine(NORELS, id="ss", tracers=[tracer])
    mach.set(["A", "C"])
    assert mach.clock() == {"A": 1, "B": 0, "C": 1, "D": 0, "Exception": 0}
    schema = mach.schema
    schema["A"] = am.State(multi=True)
    schema["B"] = am.State(remove=["C"])
    schema["D"] = am.State(add=["E"])
    schema["E"] = am.State()
    names = [*mach.state_names, "E"]
    assert mach.schema_ver == 5
    mach.set_schema(schema, names)
    assert mach.schema_ver == 6
    assert mach.state_names == ("A", "B", "C", "D", "Exception", "E")
    assert mach.states_verified is True
    assert mach.tick("E") == 0
    assert mach.clock()["E"] == 0  # port: new states start at 0 (quirk #20)
    assert tracer.calls == [
        ("verify_states", ("A", "B", "C", "D", "Exception", "E")),
        ("schema_change", ("A", "B", "C", "D", "Exception")),
    ]
    assert mach.set(["A", "B", "D"]) is am.Result.EXECUTED
    assert sorted(mach.active_states()) == ["A", "B", "D", "E"]
    assert mach.clock() == {"A": 3, "B": 1, "C": 2, "D": 1, "Exception": 0, "E": 1}


def test_set_schema_new_order() -> None:
    mach = am.Machine(NORELS, id="ss")
    schema = {**mach.schema, "E": am.State()}
    mach.set_schema(schema, ["E", "D", "C", "B", "A", "Exception"])
    assert mach.state_names == ("E", "D", "C", "B", "A", "Exception")


def test_set_schema_require_topology_recomputed() -> None:
    mach = am.Machine(NORELS, id="ss")
    assert mach.sort_states(["A", "B"]) == ["A", "B"]
    schema = {**mach.schema, "A": am.State(require=["B"]), "E": am.State()}
    mach.set_schema(schema, [*mach.state_names, "E"])
    assert mach.sort_states(["A", "B"]) == ["B", "A"]


def test_set_schema_too_short() -> None:
    mach = am.Machine(NORELS, id="ss")
    with pytest.raises(am.SchemaError):
        mach.set_schema(mach.schema, list(mach.state_names))
    with pytest.raises(am.SchemaError):
        mach.set_schema({"A": am.State()}, ["A"])
    assert mach.schema_ver == 5


def test_set_schema_names_length_mismatch() -> None:
    mach = am.Machine(NORELS, id="ss")
    schema = {**mach.schema, "E": am.State()}
    with pytest.raises(am.SchemaError):
        mach.set_schema(schema, list(mach.state_names))
    with pytest.raises(am.SchemaError):
        mach.set_schema(schema, [*mach.state_names, "E", "F"])
    assert mach.state_names == ("A", "B", "C", "D", "Exception")


def test_set_schema_incomplete_names_change_nothing() -> None:
    mach = am.Machine(NORELS, id="ss")
    schema = {**mach.schema, "E": am.State()}
    with pytest.raises(am.SchemaError):
        mach.set_schema(schema, ["A", "B", "C", "D", "E", "E"])
    assert mach.state_names == ("A", "B", "C", "D", "Exception")
    assert "E" not in mach.schema
    assert mach.schema_ver == 5
    assert not mach.has1("E")


def test_set_schema_parse_error_changes_nothing() -> None:
    mach = am.Machine(NORELS, id="ss")
    schema = {**mach.schema, "E": am.State(require=["A"], remove=["A"])}
    with pytest.raises(am.SchemaError) as info:
        mach.set_schema(schema, [*mach.state_names, "E"])
    assert "require-remove conflict for E to A" in str(info.value)
    assert mach.state_names == ("A", "B", "C", "D", "Exception")
    assert not mach.has1("E")
    assert not mach.is_err()


def test_set_schema_during_transition_is_error() -> None:
    mach = am.Machine(NORELS, id="ss")
    errors: list[BaseException] = []

    class H:
        def a_state(self, e: am.Event) -> None:
            try:
                e.machine.set_schema({**e.machine.schema, "E": am.State()}, [])
            except am.SchemaError as err:
                errors.append(err)

    mach.bind_handlers(H())
    mach.add1("A")
    assert len(errors) == 1
    assert str(errors[0]) == "schema error: cannot set schema during a transition"
    assert mach.schema_ver == 5


def test_set_schema_existing_handlers_see_new_states() -> None:
    # assembled in steps: e_state is bound before E exists (no HandlerWarning)
    mach = am.Machine(NORELS, id="ss", strict_schema=False)
    calls: list[str] = []

    class H:
        def e_state(self, e: am.Event) -> None:
            calls.append(e.name)

    mach.bind_handlers(H())
    mach.set_schema({**mach.schema, "E": am.State()}, [*mach.state_names, "E"])
    mach.add1("E")
    assert calls == ["EState"]


# ----- 1.7 export / import


def test_export_requires_verified_states() -> None:
    mach = am.Machine(NORELS, id="ex")
    with pytest.raises(am.SchemaError):
        mach.export()


def test_export_import_roundtrip() -> None:
    m1 = am.Machine(NORELS, id="ex")
    m1.set(["A"])
    m1.verify_states(list(m1.state_names))
    m1.remove1("B")
    m1.add1("A")
    m1.add1("B")
    m1.add1("C")
    data = m1.export()
    assert data == am.Serialized(
        id="ex",
        state_names=("A", "B", "C", "D", "Exception"),
        time=(1, 1, 1, 0, 0),
        queue_tick=6,
        machine_tick=0,
    )

    m2 = am.Machine(NORELS, id="other")
    with pytest.raises(am.AsyncMachineError):
        m2.import_(data)
    assert m2.active_states() == []

    m2 = am.Machine(NORELS, id="ex")
    calls: list[str] = []

    class H:
        def any_enter(self, e: am.Event) -> None:
            calls.append(e.name)

        def any_state(self, e: am.Event) -> None:
            calls.append(e.name)

    m2.bind_handlers(H())
    m2.import_(data)
    assert calls == []  # no handlers for the import itself
    assert m2.states_verified is True
    assert m2.string() == m1.string() == "(A:1 B:1 C:1)"
    assert m2.machine_tick() == 1
    assert list(m2.time()) == [1, 1, 1, 0, 0]


def test_import_adopts_state_names_and_odd_ticks() -> None:
    data = am.Serialized(
        id="im",
        state_names=("D", "Exception", "C", "B", "A"),
        time=(3, 0, 2, 1, 4),
        queue_tick=10,
        machine_tick=4,
    )
    mach = am.Machine(NORELS, id="im")
    mach.import_(data)
    assert mach.state_names == ("D", "Exception", "C", "B", "A")
    assert mach.active_states() == ["D", "B"]
    assert mach.clock() == {"D": 3, "Exception": 0, "C": 2, "B": 1, "A": 4}
    assert mach.machine_tick() == 5
    assert mach.export().machine_tick == 5


def test_import_wrong_length_is_error() -> None:
    m1 = am.Machine({"A": {}}, id="x", names=["A", "Exception"])
    data = m1.export()
    m2 = am.Machine(NORELS, id="x")
    with pytest.raises(am.AsyncMachineError):
        m2.import_(data)
    assert m2.state_names == ("A", "B", "C", "D", "Exception")


def test_import_adds_machine_restored() -> None:
    schema = {"A": am.State(), "MachineRestored": am.State()}
    m1 = am.Machine(schema, id="mr", names=["A", "MachineRestored", "Exception"])
    m1.add1("A")
    data = m1.export()
    m2 = am.Machine(schema, id="mr")
    m2.import_(data)
    assert m2.active_states() == ["MachineRestored", "A"]
    assert m2.clock() == {"A": 1, "MachineRestored": 1, "Exception": 0}
    assert am.MACHINE_RESTORED == "MachineRestored"


# ----- 1.8 schema utilities


def test_schema_merge_replaces_whole_states() -> None:
    s1 = {"A": am.State(add=["B"]), "B": am.State()}
    s2 = {"A": am.State(remove=["C"]), "C": am.State(multi=True)}
    merged = am.schema_merge(s1, s2)
    assert merged == {"A": am.State(remove=("C",)), "B": am.State(), "C": am.State(multi=True)}
    assert list(merged) == ["A", "B", "C"]
    assert s1["A"] == am.State(add=["B"])
    assert am.schema_merge() == {}
    assert am.schema_merge(FileStates, {"X": {}}) == {**FileStates.schema(), "X": am.State()}


def test_schema_prefix() -> None:
    schema = {
        "A": am.State(add=["B"], require=["C"], remove=["D"], after=["B"]),
        "B": am.State(),
        "C": am.State(),
        "FooD": am.State(add=["A"]),
    }
    out = am.schema_prefix(schema, "Foo")
    assert out == {
        "FooA": am.State(add=("FooB",), require=("FooC",), remove=("FooD",), after=("FooB",)),
        "FooB": am.State(),
        "FooC": am.State(),
        "FooFooD": am.State(add=("FooA",)),
    }
    # removeDups: a state already prefixed is left as is, relations too
    out = am.schema_prefix(schema, "Foo", remove_dups=True)
    assert set(out) == {"FooA", "FooB", "FooC", "FooD"}
    assert out["FooD"] == am.State(add=("A",))
    assert out["FooA"].remove == ("FooD",)


def test_schema_prefix_allow_and_skip_lists() -> None:
    schema = {"A": am.State(), "B": am.State(), "C": am.State()}
    assert list(am.schema_prefix(schema, "P", allowlist=["A", "C"])) == ["PA", "PC"]
    assert list(am.schema_prefix(schema, "P", skiplist=["A"])) == ["PB", "PC"]


def test_schema_filter_by_tag_and_states_by_tag() -> None:
    schema = {
        "A": am.State(tags=["net"]),
        "B": am.State(tags=["net:tcp"]),
        "C": am.State(tags=["other", "net"]),
        "D": am.State(tags=["network"]),
        "E": am.State(),
    }
    assert am.schema_filter_by_tag(schema, "net") == {"A": schema["A"], "C": schema["C"]}
    assert am.states_by_tag(schema, "net") == ["A", "B", "C"]
    assert am.states_by_tag(schema, "none") == []
    assert schema["C"].has_tag("net") is True
    assert schema["B"].has_tag("net") is False


def test_adjacent_states() -> None:
    schema = {
        "A": am.State(require=["R"], remove=["X"], add=["B"], after=["C"]),
        "B": am.State(),
    }
    assert am.adjacent_states(schema, "A") == ["B", "C", "R", "X"]
    assert am.adjacent_states(schema, "B") == []
    assert am.adjacent_states(schema, "Nope") == []


def test_state_extend_test_state_utils() -> None:
    s = am.State(auto=True, remove=["A"], add=["B"])
    added = s.extend(am.State(multi=True, remove=["C"]))
    assert added.remove == ("A", "C")
    assert added.add == ("B",)
    assert added.auto is True
    assert added.multi is True
    assert added.require is None
    # union keeps first occurrences; Auto/Multi never turned off
    again = added.extend(am.State(remove=["C", "A", "D"], require=[]))
    assert again.remove == ("A", "C", "D")
    assert again.require == ()
    assert again.auto is True and again.multi is True
    assert s == am.State(auto=True, remove=["A"], add=["B"])  # source unchanged


def test_state_set_test_state_utils() -> None:
    s = am.State(auto=True, remove=["A"], add=["B"])
    replaced = s.set(am.State(remove=["C"]), auto=False, multi=True)
    assert replaced.remove == ("C",)
    assert replaced.add == ("B",)
    assert replaced.auto is False
    assert replaced.multi is True
    # overlay with nothing given applies only auto/multi
    only = s.set(am.State(), auto=True, multi=False)
    assert only == s


def test_state_set_rels_keeps_auto_multi() -> None:
    s = am.State(auto=True, multi=True, remove=["A"], tags=["t"])
    out = s.set_rels(am.State(remove=["C"], require=["D"], multi=False))
    assert out == am.State(auto=True, multi=True, remove=("C",), require=("D",), tags=("t",))


def test_tag_args_req_constant() -> None:
    assert am.TAG_ARGS_REQ == "ArgsReq"
    assert am.EXCEPTION == "Exception"
