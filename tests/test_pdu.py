"""PDU layer: our decoder and encoders against pynetdicom's, plus fuzzing.

pynetdicom is an independent implementation of PS3.8: requests it encodes must
decode with ours to the same values, and what we encode must decode with its
classes.  The fuzz tests hold the sans-I/O invariant: any bytes either parse or
raise ProtocolError, never anything else.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom import build_context
from pynetdicom import pdu as pn_pdu
from pynetdicom import pdu_primitives as pp

from dcmrecv.wire import pdu
from dcmrecv.wire.pdu import AbortReason, AbortSource, ProtocolError

CT = "1.2.840.10008.5.1.4.1.1.2"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def pynetdicom_rq(
    contexts: list[tuple[int, str, list[str]]],
    called: str = "ANY-SCP",
    calling: str = "STORESCU",
    max_length: int = 16384,
    roles: list[tuple[str, bool, bool]] | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ encoded by pynetdicom."""
    primitive = pp.A_ASSOCIATE()
    primitive.application_context_name = pdu.DICOM_APPLICATION_CONTEXT
    primitive.calling_ae_title = calling
    primitive.called_ae_title = called
    items = []
    for context_id, abstract, transfers in contexts:
        cx = build_context(abstract, transfers)
        cx.context_id = context_id
        items.append(cx)
    primitive.presentation_context_definition_list = items
    maximum = pp.MaximumLengthNotification()
    maximum.maximum_length_received = max_length
    implementation = pp.ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.3.4"
    version = pp.ImplementationVersionNameNotification()
    version.implementation_version_name = "TEST_1"
    user: list[object] = [maximum, implementation, version]
    for uid, scu, scp in roles or []:
        role = pp.SCP_SCU_RoleSelectionNegotiation()
        role.sop_class_uid = uid
        role.scu_role = scu
        role.scp_role = scp
        user.append(role)
    primitive.user_information = user
    request = pn_pdu.A_ASSOCIATE_RQ()
    request.from_primitive(primitive)
    return bytes(request.encode())


def test_request_from_pynetdicom_decodes_to_the_same_values() -> None:
    raw = pynetdicom_rq(
        [(1, CT, [EXPLICIT, IMPLICIT]), (3, VERIFICATION, [IMPLICIT])],
        roles=[(CT, True, False)],
    )
    rq = pdu.decode_associate_rq(raw[6:])
    assert rq.called_ae_title == "ANY-SCP"
    assert rq.calling_ae_title == "STORESCU"
    assert rq.protocol_version == 1
    assert rq.application_context == pdu.DICOM_APPLICATION_CONTEXT
    assert [(c.context_id, c.abstract_syntax, c.transfer_syntaxes) for c in rq.contexts] == [
        (1, CT, (EXPLICIT, IMPLICIT)),
        (3, VERIFICATION, (IMPLICIT,)),
    ]
    assert rq.max_length == 16384
    assert rq.implementation_class_uid == "1.2.3.4"
    assert rq.implementation_version_name == "TEST_1"
    assert rq.roles == {CT: (True, False)}


def test_associate_ac_decodes_with_pynetdicom() -> None:
    rq = pdu.decode_associate_rq(pynetdicom_rq([(1, CT, [EXPLICIT]), (3, "1.2.3", [IMPLICIT])])[6:])
    raw = pdu.encode_associate_ac(
        rq,
        "DCMRECV",
        (pdu.PresentationContextAC(1, 0, EXPLICIT), pdu.PresentationContextAC(3, 3, "")),
        32768,
        "1.2.826.0.1",
        "OURS_1",
        roles=((CT, False, True),),
    )
    ac = pn_pdu.A_ASSOCIATE_AC()
    ac.decode(raw)
    primitive = ac.to_primitive()
    assert primitive.called_ae_title == "DCMRECV"
    assert primitive.calling_ae_title == "STORESCU"
    results = {cx.context_id: (cx.result, cx.transfer_syntax) for cx in ac.presentation_context}
    assert results[1] == (0, EXPLICIT)
    assert results[3][0] == 3
    user = {type(item).__name__: item for item in primitive.user_information}
    assert user["MaximumLengthNotification"].maximum_length_received == 32768
    assert user["ImplementationClassUIDNotification"].implementation_class_uid == "1.2.826.0.1"
    assert user["ImplementationVersionNameNotification"].implementation_version_name == "OURS_1"
    role = user["SCP_SCU_RoleSelectionNegotiation"]
    assert (role.sop_class_uid, role.scu_role, role.scp_role) == (CT, False, True)


@pytest.mark.parametrize(
    ("encoded", "pynetdicom_class", "fields"),
    [
        # A-ASSOCIATE-RJ: type 03, length 4, reserved, result 1, source 1, reason 7
        (
            pdu.encode_associate_rj(1, 1, 7),
            pn_pdu.A_ASSOCIATE_RJ,
            ("result", "source", "reason_diagnostic"),
        ),
        # A-ABORT: type 07, length 4, reserved x2, source 2, reason 6
        (pdu.encode_abort(2, 6), pn_pdu.A_ABORT_RQ, ("source", "reason_diagnostic")),
    ],
)
def test_small_pdus_decode_with_pynetdicom(
    encoded: bytes, pynetdicom_class: type, fields: tuple[str, ...]
) -> None:
    decoded = pynetdicom_class()
    decoded.decode(encoded)
    values = tuple(getattr(decoded, name) for name in fields)
    assert values == ((1, 1, 7) if len(fields) == 3 else (2, 6))


def test_release_rp_bytes() -> None:
    # 06 00 | 00 00 00 04 | 00 00 00 00  (PS3.8 9.3.7)
    assert bytes.fromhex("060000000004 00000000") == pdu.RELEASE_RP


def test_p_data_round_trip_through_pynetdicom() -> None:
    payload = bytes(range(256)) * 200  # 51200 bytes: needs fragments at 16384
    raw = pdu.encode_p_data(5, False, payload, 16384)
    offset = 0
    fragments = []
    while offset < len(raw):
        pdu_type, length = pdu.PDU_HEADER.unpack_from(raw, offset)
        assert pdu_type == pdu.P_DATA_TF
        assert length <= 16384, "a P-DATA-TF exceeds the peer's maximum length"
        item = pn_pdu.P_DATA_TF()
        item.decode(raw[offset : offset + 6 + length])
        fragments.extend(item.presentation_data_value_items)
        offset += 6 + length
    assert b"".join(pdv.presentation_data_value[1:] for pdv in fragments) == payload
    controls = [pdv.presentation_data_value[0] for pdv in fragments]
    assert controls[-1] == 0x02 and all(c == 0x00 for c in controls[:-1])


def test_iter_pdvs_ignores_reserved_control_bits() -> None:
    # PS3.8 E.2: bits 2-7 are never checked by the receiver.
    body = memoryview(bytes.fromhex("00000004 01 FF 4142"))
    assert [(c, m & 0x03, bytes(v)) for c, m, v in pdu.iter_pdvs(body)] == [(1, 3, b"AB")]


def test_iter_pdvs_yields_views_of_each_value() -> None:
    # Two PDVs: len 6, ctx 1, command+last, "ABCD"; len 4, ctx 3, data, "EF"
    body = memoryview(bytes.fromhex("00000006 01 03 41424344 00000004 03 00 4546"))
    assert [(c, m, bytes(v)) for c, m, v in pdu.iter_pdvs(body)] == [
        (1, 3, b"ABCD"),
        (3, 0, b"EF"),
    ]


@pytest.mark.parametrize(
    "body_hex",
    [
        "",  # P-DATA-TF without a PDV
        "00000001 01",  # PDV length below 2
        "00000010 01 03 4142",  # PDV longer than the PDU
        "000000",  # truncated PDV header
    ],
)
def test_iter_pdvs_rejects_inconsistent_lengths(body_hex: str) -> None:
    with pytest.raises(ProtocolError):
        list(pdu.iter_pdvs(memoryview(bytes.fromhex(body_hex))))


def _rq_with_items(items: bytes, version: int = 1) -> bytes:
    fixed = struct.pack(">H", version) + b"\0\0" + b"CALLED".ljust(16) + b"CALLING".ljust(16)
    return fixed + bytes(32) + items


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(value)) + value


APP = _item(0x10, b"1.2.840.10008.3.1.1.1")
USER = _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.3"))


def _context(context_id: int, *subitems: bytes) -> bytes:
    return _item(0x20, bytes((context_id, 0, 0, 0)) + b"".join(subitems))


GOOD_CONTEXT = _context(1, _item(0x30, CT.encode()), _item(0x40, IMPLICIT.encode()))


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            _rq_with_items(APP + _context(2, _item(0x30, CT.encode()), _item(0x40, b"1.2")) + USER),
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
        ),  # even context ID
        (
            _rq_with_items(APP + GOOD_CONTEXT + GOOD_CONTEXT + USER),
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
        ),  # context ID used twice
        (_rq_with_items(APP + USER), AbortReason.INVALID_PDU_PARAMETER_VALUE),  # no context
        (_rq_with_items(GOOD_CONTEXT + USER), AbortReason.INVALID_PDU_PARAMETER_VALUE),  # no app
        (_rq_with_items(APP + GOOD_CONTEXT), AbortReason.INVALID_PDU_PARAMETER_VALUE),  # no user
        (
            _rq_with_items(APP + GOOD_CONTEXT + USER + _item(0x99, b"")),
            AbortReason.UNRECOGNIZED_PDU_PARAMETER,
        ),  # unknown item type
        (
            _rq_with_items(APP + _context(1, _item(0x30, CT.encode())) + USER),
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
        ),  # no transfer syntax
        (_rq_with_items(APP + GOOD_CONTEXT + USER)[:-3], AbortReason.INVALID_PDU_PARAMETER_VALUE),
        (
            _rq_with_items(APP + _item(0x20, b"\x01\x00") + USER),
            AbortReason.INVALID_PDU_PARAMETER_VALUE,
        ),  # context item too short
        (b"\x00\x01" + bytes(20), AbortReason.INVALID_PDU_PARAMETER_VALUE),  # too short overall
    ],
)
def test_malformed_requests_raise_protocol_error_with_reason(body: bytes, reason: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        pdu.decode_associate_rq(body)
    assert caught.value.reason == reason


def test_unknown_user_information_subitems_are_ignored() -> None:
    user = _item(
        0x50,
        _item(0x51, struct.pack(">L", 0))
        + _item(0x58, b"\x01\x00\x00\x04user\x00\x00")  # user identity
        + _item(0x7F, b"whatever"),
    )
    rq = pdu.decode_associate_rq(_rq_with_items(APP + GOOD_CONTEXT + user))
    assert rq.max_length == 0 and len(rq.contexts) == 1


def test_protocol_version_is_reported_not_rejected_by_the_decoder() -> None:
    rq = pdu.decode_associate_rq(_rq_with_items(APP + GOOD_CONTEXT + USER, version=2))
    assert rq.protocol_version == 2


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_associate_rq_parses_or_raises_protocol_error(data: bytes) -> None:
    try:
        pdu.decode_associate_rq(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_fuzz_structured_items_parse_or_raise_protocol_error(parts: list[bytes]) -> None:
    # Well-framed items with arbitrary contents reach the deeper parsers.
    items = b"".join(_item(0x20 if i % 3 else 0x50, p) for i, p in enumerate(parts))
    try:
        pdu.decode_associate_rq(_rq_with_items(APP + items))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_pdvs_parse_or_raise_protocol_error(data: bytes) -> None:
    try:
        for _, _, fragment in pdu.iter_pdvs(memoryview(data)):
            assert len(fragment) <= len(data)
    except ProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.integers(min_value=1, max_value=97))
def test_buffer_reassembles_pdus_from_any_split(payload: bytes, step: int) -> None:
    stream = pdu.encode_p_data(1, False, payload, 512) + pdu.RELEASE_RP
    buffer = pdu.PDUBuffer(initial_capacity=64)
    buffer.max_lengths = {pdu.P_DATA_TF: 512, pdu.A_RELEASE_RQ: 4, pdu.A_RELEASE_RP: 4}
    received = bytearray()
    types = []
    offset = 0
    while offset < len(stream) or buffer.buffered:
        whole = buffer.next_pdu()
        if whole is None:
            view = buffer.writable()
            count = min(step, len(view), len(stream) - offset)
            view[:count] = stream[offset : offset + count]
            del view
            buffer.advance(count)
            offset += count
            continue
        types.append(whole.pdu_type)
        if isinstance(whole, pdu.PDataTF):
            for _, _, fragment in pdu.iter_pdvs(whole.body):
                received += fragment
    assert bytes(received) == payload
    assert types[-1] == pdu.A_RELEASE_RP


def test_buffer_refuses_oversized_pdu_from_its_header_alone() -> None:
    buffer = pdu.PDUBuffer()
    buffer.max_lengths = {pdu.A_ASSOCIATE_RQ: pdu.MAX_ASSOCIATE_RQ_LENGTH}
    view = buffer.writable()
    view[:6] = b"\x01\x00\xff\xff\xff\xff"  # A-ASSOCIATE-RQ claiming 4 GiB
    del view
    buffer.advance(6)
    with pytest.raises(pdu.PDUTooLong) as caught:
        buffer.next_pdu()
    error = caught.value
    assert (error.pdu_type, error.length, error.limit) == (
        pdu.A_ASSOCIATE_RQ,
        0xFFFFFFFF,
        pdu.MAX_ASSOCIATE_RQ_LENGTH,
    )
    assert error.reason == AbortReason.INVALID_PDU_PARAMETER_VALUE


def _buffer_with(data: bytes) -> pdu.PDUBuffer:
    buffer = pdu.PDUBuffer()
    buffer.max_lengths = {pdu.A_ABORT: 4, pdu.A_ASSOCIATE_RJ: 4, pdu.A_RELEASE_RQ: 4}
    view = buffer.writable()
    view[: len(data)] = data
    del view
    buffer.advance(len(data))
    return buffer


def test_next_pdu_decodes_abort_source_and_reason() -> None:
    # A-ABORT: type 07, length 4; reserved, reserved, source 2 (provider), reason 2.
    buffer = _buffer_with(bytes.fromhex("07 00 00000004 00 00 02 02"))
    assert buffer.next_pdu() == pdu.Abort(AbortSource.SERVICE_PROVIDER, AbortReason.UNEXPECTED_PDU)


def test_next_pdu_decodes_reject_into_the_reason_table() -> None:
    # A-ASSOCIATE-RJ: type 03, length 4; reserved, result 1, source 1, reason 7.
    rj = _buffer_with(bytes.fromhex("03 00 00000004 00 01 01 07")).next_pdu()
    assert isinstance(rj, pdu.AssociateRJ)
    assert (rj.result, rj.source) == (pdu.RejectResult.REJECTED_PERMANENT, pdu.RejectSource(1))
    assert rj.named_reason is pdu.UserRejectReason.CALLED_AE_TITLE_NOT_RECOGNIZED
    assert pdu.reject_text(3, 2) == "local limit exceeded"
    assert pdu.reject_text(2, 9) == "reason unknown"


def test_next_pdu_returns_release_request_and_p_data_as_a_view() -> None:
    buffer = _buffer_with(pdu.RELEASE_RQ + pdu.encode_p_data(1, True, b"abcd", 0))
    buffer.max_lengths[pdu.P_DATA_TF] = 100
    assert buffer.next_pdu() == pdu.ReleaseRQ()
    data = buffer.next_pdu()
    assert isinstance(data, pdu.PDataTF) and isinstance(data.body, memoryview)
    assert [bytes(f) for _, _, f in pdu.iter_pdvs(data.body)] == [b"abcd"]


def test_unknown_pdu_type_is_a_fact_not_a_text() -> None:
    with pytest.raises(pdu.UnrecognizedPDU) as caught:
        _buffer_with(bytes.fromhex("09 00 00000000")).next_pdu()
    assert caught.value.pdu_type == 0x09
    assert caught.value.reason == AbortReason.UNRECOGNIZED_PDU


def test_pdv_longer_than_its_pdu_carries_both_lengths() -> None:
    # One PDV declaring 100 bytes in a P-DATA-TF body of 8.
    with pytest.raises(pdu.LengthMismatch) as caught:
        list(pdu.iter_pdvs(memoryview(bytes.fromhex("00000064 01 03 0000"))))
    assert (caught.value.declared, caught.value.available) == (100, 4)


def test_buffer_memory_follows_data_not_declared_length() -> None:
    buffer = pdu.PDUBuffer(initial_capacity=1024)
    buffer.max_lengths = {pdu.A_ASSOCIATE_RQ: pdu.MAX_ASSOCIATE_RQ_LENGTH}
    view = buffer.writable()
    view[:6] = struct.pack(">BxL", 1, pdu.MAX_ASSOCIATE_RQ_LENGTH)
    del view
    buffer.advance(6)
    assert buffer.next_pdu() is None
    # Declared 1 MiB, sent 6 bytes: the free space offered grows by steps, not to 1 MiB.
    assert len(buffer.writable()) < 64 * 1024
