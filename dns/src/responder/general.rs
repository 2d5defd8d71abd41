//! The general path: every message, parsed and answered with hickory-proto.
//!
//! What it answers, in the order it decides (Knot's choices where the RFCs leave room):
//!
//! | query | response |
//! |---|---|
//! | shorter than a header, or QR = 1 (a response: answering could loop two servers) | nothing |
//! | a section that does not parse, trailing bytes, a compression pointer in the question | FORMERR, the question only if it parsed (one question) |
//! | OPT version > 0 | BADVERS (extended RCODE 16), OPT version 0 |
//! | OPCODE other than QUERY | NOTIMP |
//! | QDCOUNT other than 1 (RFC 9619) | FORMERR, no question |
//! | a TSIG record (Berth has no keys, RFC 8945 §5.2 BADKEY) | NOTAUTH |
//! | class other than IN or ANY | REFUSED |
//! | AXFR or IXFR (transfers are never allowed; followers use the gRPC stream) | REFUSED |
//! | type 0 (reserved) | NOTIMP |
//! | a name outside the zone | REFUSED |
//! | the apex: SOA, NS, A/AAAA if it has any, ANY (all of them) | the records, AA |
//! | a name with addresses: A, AAAA, ANY (A and AAAA) | the records, AA |
//! | a name that exists, another type (or no addresses of that type) | NODATA: NOERROR, SOA in authority, AA |
//! | a name that does not exist | NXDOMAIN, SOA in authority, AA |
//!
//! Every response copies ID, OPCODE and RD, echoes the question as sent, and carries an OPT record
//! (payload [`MAX_UDP_PAYLOAD`], version 0, DO copied, no options) when the query had one. A
//! response larger than the transport allows goes out with TC set and only its question and OPT.

use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, EmitAndCount, Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
    emit_message_parts,
};
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};

use super::{Location, MAX_UDP_PAYLOAD, Settings, Transport, response_limit};
use crate::zone::Published;

/// A DNS header's size.
const HEADER: usize = 12;
/// The most labels a name of at most 255 bytes can have.
const MAX_LABELS: usize = 128;

/// The response to `query` in `out`, or `false` for none.
pub(super) fn answer(
    settings: &Settings,
    zone: &Published,
    query: &[u8],
    transport: Transport,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    if query.len() < HEADER {
        return false;
    }
    let mut decoder = BinDecoder::new(query);
    let Ok(header) = Header::read(&mut decoder) else {
        return false;
    };
    if header.metadata.message_type == MessageType::Response {
        return false;
    }
    let mut metadata = Metadata::response_from_request(&header.metadata);
    // Knot leaves CD clear in its answers; there is no DNSSEC here for it to be about.
    metadata.checking_disabled = false;
    let mut response = Response {
        metadata,
        question: None,
        edns: None,
        limit: response_limit(transport, None),
    };

    // The question section, kept as sent.
    let mut questions = Vec::with_capacity(1);
    for _ in 0..header.counts.queries {
        match Query::read(&mut decoder) {
            Ok(question) => questions.push(question),
            Err(_) => return response.error(ResponseCode::FormErr, out),
        }
    }
    let question_bytes = &query[HEADER..decoder.index()];
    if let [question] = questions.as_slice() {
        match QuestionBytes::new(question_bytes) {
            Some(bytes) => response.question = Some((question, bytes)),
            None => return response.error(ResponseCode::FormErr, out),
        }
    }

    // The other sections: only their well-formedness, the OPT and a TSIG matter.
    let op_code = header.metadata.op_code;
    let counts = header.counts;
    let sections = Message::read_records(&mut decoder, counts.answers.into(), false, op_code)
        .and_then(|_| {
            Message::read_records(&mut decoder, counts.authorities.into(), false, op_code)
        })
        .and_then(|_| {
            Message::read_records(&mut decoder, counts.additionals.into(), true, op_code)
        });
    let Ok((additionals, edns, signature)) = sections else {
        return response.error(ResponseCode::FormErr, out);
    };
    if !decoder.is_empty() {
        return response.error(ResponseCode::FormErr, out);
    }
    if let Some(edns) = &edns {
        let mut ours = Edns::new();
        ours.set_max_payload(MAX_UDP_PAYLOAD)
            .set_version(0)
            .set_dnssec_ok(edns.flags().dnssec_ok);
        response.edns = Some(ours);
        response.limit = response_limit(transport, Some(edns.max_payload()));
        if edns.version() > 0 {
            return response.error(ResponseCode::BADVERS, out);
        }
    }
    if op_code != OpCode::Query {
        return response.error(ResponseCode::NotImp, out);
    }
    let Some((question, _)) = response.question.as_ref() else {
        return response.error(ResponseCode::FormErr, out);
    };
    let signed = signature.is_some()
        || additionals
            .iter()
            .any(|record| record.record_type() == RecordType::TSIG);
    if signed {
        return response.error(ResponseCode::NotAuth, out);
    }
    if !matches!(question.query_class, DNSClass::IN | DNSClass::ANY) {
        return response.error(ResponseCode::Refused, out);
    }
    let qtype = question.query_type;
    if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return response.error(ResponseCode::Refused, out);
    }
    if u16::from(qtype) == 0 {
        return response.error(ResponseCode::NotImp, out);
    }

    let location = settings.locate(|| question.name.iter(), zone);
    let owner = &question.name;
    let mut answers = Vec::new();
    let (addresses, apex, exists) = match location {
        Location::Outside => return response.error(ResponseCode::Refused, out),
        Location::Apex(addresses) => (addresses.unwrap_or_default(), true, true),
        Location::Records(addresses) => (addresses, false, true),
        Location::Interior => (&[][..], false, true),
        Location::Nowhere => (&[][..], false, false),
    };
    if apex && matches!(qtype, RecordType::SOA | RecordType::ANY) {
        answers.push(settings.soa(owner, zone.serial, settings.ttl));
    }
    if apex && matches!(qtype, RecordType::NS | RecordType::ANY) {
        answers.push(Record::from_rdata(
            owner.clone(),
            settings.ttl,
            RData::NS(NS(settings.mname.clone())),
        ));
    }
    if matches!(qtype, RecordType::A | RecordType::ANY) {
        answers.extend(addresses.iter().filter_map(|address| match address {
            IpAddr::V4(v4) => Some(Record::from_rdata(
                owner.clone(),
                settings.ttl,
                RData::A(A(*v4)),
            )),
            IpAddr::V6(_) => None,
        }));
    }
    if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
        answers.extend(addresses.iter().filter_map(|address| match address {
            IpAddr::V6(v6) => Some(Record::from_rdata(
                owner.clone(),
                settings.ttl,
                RData::AAAA(AAAA(*v6)),
            )),
            IpAddr::V4(_) => None,
        }));
    }
    response.metadata.authoritative = true;
    if !answers.is_empty() {
        return response.emit(&answers, &[], out);
    }
    if !exists {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    let soa = settings.soa(&settings.origin, zone.serial, settings.negative_ttl);
    response.emit(&[], &[soa], out)
}

impl Settings {
    /// The zone's SOA record with owner `owner` (the origin, as asked or as configured).
    fn soa(&self, owner: &Name, serial: u32, ttl: u32) -> Record {
        // The wire carries REFRESH, RETRY and EXPIRE as 32 bits; hickory types them i32. The bits
        // are what matters, so they go through unchanged.
        let bits = |value: u32| i32::from_be_bytes(value.to_be_bytes());
        Record::from_rdata(
            owner.clone(),
            ttl,
            RData::SOA(SOA::new(
                self.mname.clone(),
                self.rname.clone(),
                serial,
                bits(self.refresh),
                bits(self.retry),
                bits(self.expire),
                self.minimum,
            )),
        )
    }
}

/// A response being decided: its header, the question to echo, the OPT to add and the size limit.
struct Response<'q> {
    metadata: Metadata,
    question: Option<(&'q Query, QuestionBytes<'q>)>,
    edns: Option<Edns>,
    limit: usize,
}

impl Response<'_> {
    /// An error response: no records, not authoritative.
    fn error(mut self, code: ResponseCode, out: &mut Vec<u8>) -> bool {
        self.metadata.response_code = code;
        self.metadata.authoritative = false;
        self.emit(&[], &[], out)
    }

    /// Encodes the response into `out`; too large for the transport, it goes out with TC and no
    /// records instead.
    fn emit(mut self, answers: &[Record], authorities: &[Record], out: &mut Vec<u8>) -> bool {
        if self.encode(answers, authorities, out).is_ok() && out.len() <= self.limit {
            return true;
        }
        self.metadata.truncation = true;
        if self.encode(&[], &[], out).is_ok() && out.len() <= self.limit {
            return true;
        }
        // Not even the question fits (it always does: a question is at most 259 bytes): say so.
        self.question = None;
        self.metadata.response_code = ResponseCode::ServFail;
        self.encode(&[], &[], out).is_ok()
    }

    fn encode(
        &self,
        answers: &[Record],
        authorities: &[Record],
        out: &mut Vec<u8>,
    ) -> Result<(), ProtoError> {
        out.clear();
        let mut encoder = BinEncoder::new(out);
        let mut question = QuestionEmitter(self.question.as_ref().map(|(_, bytes)| bytes));
        emit_message_parts(
            &self.metadata,
            &mut question,
            &mut answers.iter(),
            &mut authorities.iter(),
            &mut std::iter::empty::<&Record>(),
            self.edns.as_ref(),
            None,
            &mut encoder,
        )
        .map(drop)
    }
}

/// The question section as sent, with where each label of its name starts (offsets in the
/// message: the question starts right after the 12-byte header in the query and the response).
struct QuestionBytes<'q> {
    bytes: &'q [u8],
    label_starts: [u16; MAX_LABELS],
    labels: usize,
    /// Where the name ends (before its root byte), in the message.
    name_end: u16,
}

impl<'q> QuestionBytes<'q> {
    /// `None` if the name holds a compression pointer: echoed as sent it would point into our
    /// response, not the query, and mean another name.
    fn new(bytes: &'q [u8]) -> Option<Self> {
        let mut label_starts = [0; MAX_LABELS];
        let mut labels = 0;
        let mut at = 0;
        loop {
            let len = *bytes.get(at)?;
            if len == 0 {
                break;
            }
            if len & 0xC0 != 0 {
                return None;
            }
            *label_starts.get_mut(labels)? = u16::try_from(HEADER + at).ok()?;
            labels += 1;
            at += 1 + usize::from(len);
        }
        Some(Self {
            bytes,
            label_starts,
            labels,
            name_end: u16::try_from(HEADER + at).ok()?,
        })
    }
}

/// Emits the question as sent and registers its name's suffixes for compression, so names equal
/// to the question's (byte for byte) become pointers to it, as the fast path writes them.
struct QuestionEmitter<'b, 'q>(Option<&'b QuestionBytes<'q>>);

impl EmitAndCount for QuestionEmitter<'_, '_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let Some(question) = self.0 else {
            return Ok(0);
        };
        encoder.emit_vec(question.bytes)?;
        for &start in &question.label_starts[..question.labels] {
            encoder.store_label_pointer(start.into(), question.name_end.into());
        }
        Ok(1)
    }
}
