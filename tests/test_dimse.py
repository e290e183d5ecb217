"""DIMSE command sets: decode what pynetdicom encodes, encode what pynetdicom decodes."""

from __future__ import annotations

import logging
from io import BytesIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ
from pynetdicom.dsutils import decode as _decode

from dcmrecv.wire import dimse
from tests import rawpeer
from tests.conftest import running_receiver

CT = "1.2.840.10008.5.1.4.1.1.2"


def decode(raw: bytes, implicit: bool, little: bool) -> Dataset:
    return _decode(BytesIO(raw), implicit, little)


def _store_rq(message_id: int = 7, instance: str = "1.2.3.4.5") -> bytes:
    from pynetdicom.dimse_primitives import C_STORE

    primitive = C_STORE()
    primitive.MessageID = message_id
    primitive.AffectedSOPClassUID = CT
    primitive.AffectedSOPInstanceUID = instance
    primitive.Priority = 2
    primitive.MoveOriginatorApplicationEntityTitle = "MOVER"
    primitive.DataSet = BytesIO(b"\x00")  # non-empty: the command announces a data set
    message = C_STORE_RQ()
    message.primitive_to_message(primitive)
    return _encode_command_set(message.command_set)


def _encode_command_set(command_set: Dataset) -> bytes:
    from pynetdicom.dsutils import encode

    raw = encode(command_set, True, True)
    assert raw is not None
    return raw


def test_c_store_rq_from_pynetdicom() -> None:
    command = dimse.decode_command(_store_rq())
    assert command.command_field == dimse.C_STORE_RQ
    assert command.message_id == 7
    assert command.has_data_set
    assert command.affected_sop_class_uid == CT
    assert command.affected_sop_instance_uid == "1.2.3.4.5"
    assert command.priority == 2
    assert command.move_originator_aet == "MOVER"


def test_c_echo_rq_from_pynetdicom() -> None:
    from pynetdicom.dimse_primitives import C_ECHO

    primitive = C_ECHO()
    primitive.MessageID = 3
    primitive.AffectedSOPClassUID = "1.2.840.10008.1.1"
    message = C_ECHO_RQ()
    message.primitive_to_message(primitive)
    command = dimse.decode_command(_encode_command_set(message.command_set))
    assert (command.command_field, command.message_id, command.has_data_set) == (0x30, 3, False)


def test_store_response_decodes_with_pydicom() -> None:
    raw = dimse.encode_response(dimse.C_STORE_RSP, 7, 0xA700, CT, "1.2.3.4.5", "disk full")
    rsp = decode(raw, True, True)
    assert rsp.CommandField == 0x8001
    assert rsp.MessageIDBeingRespondedTo == 7
    assert rsp.Status == 0xA700
    assert rsp.AffectedSOPClassUID == CT
    assert rsp.AffectedSOPInstanceUID == "1.2.3.4.5"
    assert rsp.ErrorComment == "disk full"
    assert rsp.CommandDataSetType == 0x0101
    # Group length counts every byte after it (PS3.7 E.1).
    assert rsp.CommandGroupLength == len(raw) - 12


def test_success_response_carries_no_error_comment() -> None:
    rsp = decode(dimse.encode_response(0x8001, 1, 0, CT, "1.2", "ignored"), True, True)
    assert "ErrorComment" not in rsp


@pytest.mark.parametrize(
    "raw",
    [
        b"",  # nothing
        b"\x00\x00\x00\x01\x04\x00\x00\x00",  # header only, value missing
        b"\x08\x00\x16\x00\x02\x00\x00\x00ab",  # element outside group 0000
        # Command Field present but Message ID missing
        b"\x00\x00\x00\x01\x02\x00\x00\x00\x01\x00\x00\x00\x00\x08\x02\x00\x00\x00\x01\x01",
    ],
)
def test_malformed_commands_raise_command_error(raw: bytes) -> None:
    with pytest.raises(dimse.CommandError):
        dimse.decode_command(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_commands_decode_or_raise_command_error(raw: bytes) -> None:
    try:
        dimse.decode_command(raw)
    except dimse.CommandError:
        pass


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (0x0000, "Success"),
        (0xA700, "Refused: OutOfResources"),
        (0xA7FF, "Refused: OutOfResources"),
        (0xA900, "Error: DataSetDoesNotMatchSOPClass"),
        (0xC123, "Error: CannotUnderstand"),
        (0x0122, "Refused: SOPClassNotSupported"),
    ],
)
def test_status_texts_are_dcmtks(status: int, text: str) -> None:
    assert dimse.store_status_text(status) == text


# --- C-CANCEL-RQ: no Message ID, a Message ID Being Responded To ------------------------------


def _cancel_rq(responded_to: int) -> bytes:
    # C-CANCEL-RQ (PS3.7 9.3.2.3, E.1): Command Field 0FFF, Message ID Being
    # Responded To, Command Data Set Type 0101 (none); no Message ID element.
    return rawpeer.command_set(
        rawpeer.element(0x0100, rawpeer.us(0x0FFF)),
        rawpeer.element(0x0120, rawpeer.us(responded_to)),
        rawpeer.element(0x0800, rawpeer.us(0x0101)),
    )


def test_cancel_request_decodes_with_the_id_it_cancels() -> None:
    command = dimse.decode_command(_cancel_rq(5))
    assert command.command_field == dimse.C_CANCEL_RQ
    assert command.message_id_being_responded_to == 5
    assert not command.has_data_set


def test_cancel_request_is_ignored_and_the_association_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dcmrecv")
    with running_receiver() as server, rawpeer.RawPeer(server.port) as peer:
        peer.associate()
        peer.send(rawpeer.message(1, True, _cancel_rq(1)))
        peer.send(rawpeer.message(1, True, rawpeer.c_echo_rq(message_id=2)))
        fields = peer.receive_command()
        assert rawpeer.status_of(fields) == 0x0000
        peer.release()
    assert "Received C-CANCEL Request (MsgID 1): nothing to cancel" in caplog.text
    assert "Malformed DIMSE command" not in caplog.text
