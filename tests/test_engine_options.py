"""Engine options that storescp exposes: refuse, reject, promiscuous, abort, events."""

from __future__ import annotations

import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification

from dcmrecv.events import AssociationEnded, AssociationInfo, EventBus, InstanceAnswered
from dcmrecv.negotiation.asconfig import verification_only_profile
from tests.conftest import rejection_seen, running_receiver, subscribed

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))  # type: ignore[arg-type]
PRIVATE_CLASS = "1.2.826.0.1.3680043.9.9999.1"
EXPLICIT = "1.2.840.10008.1.2.1"


def test_refuse_rejects_every_association(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    with running_receiver(output_directory=tmp_path, refuse_associations=True) as server:
        assert rejection_seen(ae, server.port) == (1, 1, 1)


def test_reject_requires_an_implementation_class_uid(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(Verification)
    with running_receiver(output_directory=tmp_path, require_implementation_uid=True) as server:
        # pynetdicom always sends its Implementation Class UID: accepted.
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.is_established
        assoc.release()


def test_promiscuous_accepts_unlisted_abstract_syntaxes(tmp_path: Path) -> None:
    ae = AE()
    ae.add_requested_context(PRIVATE_CLASS, ["1.2.840.10008.1.2", EXPLICIT])
    ae.add_requested_context(Verification)
    with running_receiver(
        output_directory=tmp_path,
        profile=verification_only_profile(),
        promiscuous_transfer_syntaxes=(EXPLICIT, "1.2.840.10008.1.2"),
    ) as server:
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.is_established
        accepted = {cx.abstract_syntax: cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
        assoc.release()
    assert accepted[PRIVATE_CLASS] == EXPLICIT  # our preference, not the peer's order


@pytest.mark.parametrize("option", ["abort_during_store", "abort_after_store"])
def test_abort_options_abort_and_store_nothing(tmp_path: Path, option: str) -> None:
    from dcmrecv.negotiation.asconfig import load_profile

    profile = load_profile(Path(__file__).resolve().parent.parent / "storescp.cfg", "Default")
    ae = AE()
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    with running_receiver(output_directory=tmp_path, profile=profile, **{option: True}) as server:
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.is_established
        status = assoc.send_c_store(pydicom.dcmread(CT_SMALL))
        assoc.join(10)  # pynetdicom records the A-ABORT in its own thread
        assert assoc.is_aborted
    assert not status  # no response: the association was aborted
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


class _Recorder:
    """A subscriber of the event bus that keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[tuple[str, AssociationInfo, object]] = []
        self.lock = threading.Lock()

    def subscribe(self, bus: EventBus) -> None:
        bus.subscribe(InstanceAnswered, self.instance_answered)
        bus.subscribe(AssociationEnded, self.association_ended)

    def instance_answered(self, event: InstanceAnswered) -> None:
        with self.lock:
            self.events.append(("stored", event.association, event.path))

    def association_ended(self, event: AssociationEnded) -> None:
        with self.lock:
            self.events.append(("ended", event.association, None))


def test_events_report_stored_instances_then_the_end(tmp_path: Path) -> None:
    from dcmrecv.negotiation.asconfig import load_profile

    profile = load_profile(Path(__file__).resolve().parent.parent / "storescp.cfg", "Default")
    recorder = _Recorder()
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    with running_receiver(
        output_directory=tmp_path,
        profile=profile,
        server_args=subscribed(recorder),
    ) as server:
        assoc = ae.associate("127.0.0.1", server.port, ae_title="RECEIVER")
        assert assoc.send_c_store(pydicom.dcmread(CT_SMALL)).Status == 0
        assoc.release()
    kinds = [kind for kind, _, _ in recorder.events]
    assert kinds == ["stored", "ended"]
    info = recorder.events[0][1]
    assert (info.calling_ae_title, info.called_ae_title) == ("SENDER", "RECEIVER")
    stored_path = recorder.events[0][2]
    assert isinstance(stored_path, str) and Path(stored_path).exists()


def test_acknowledge_without_contexts_sends_an_ac_refusing_all(tmp_path: Path) -> None:
    # storescp's behaviour: an A-ASSOCIATE-AC even though no context is accepted.
    from tests.rawpeer import RawPeer, associate_rq

    request = associate_rq([(1, PRIVATE_CLASS, ("1.2.840.10008.1.2",))])
    with (
        running_receiver(output_directory=tmp_path, acknowledge_without_contexts=True) as server,
        RawPeer(server.port) as peer,
    ):
        assert peer.associate(request) == {}


def test_promiscuous_leaves_known_but_unlisted_classes_refused(tmp_path: Path) -> None:
    # DCMTK's storescp -pm takes only UIDs it has no name for; CT Image Storage is
    # known, so a profile without it still refuses it.
    ae = AE()
    ae.add_requested_context(CTImageStorage, EXPLICIT)
    ae.add_requested_context(PRIVATE_CLASS, EXPLICIT)
    with running_receiver(
        output_directory=tmp_path,
        profile=verification_only_profile(),
        promiscuous_transfer_syntaxes=(EXPLICIT,),
    ) as server:
        assoc = ae.associate("127.0.0.1", server.port)
        assert assoc.is_established
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assoc.release()
    assert accepted == {PRIVATE_CLASS}
