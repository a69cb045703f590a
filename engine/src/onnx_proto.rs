//! The few ONNX protobuf messages an exported model needs, written by hand: the wire format is
//! five rules (varints, zigzag-free two's complement for int64, fixed32 floats, and
//! length-delimited strings, bytes and sub-messages), and the messages are plain lists of
//! fields. A protobuf crate would bring a build-time code generator (or a runtime reflection
//! library) for about 200 lines of encoding. Field numbers are those of `onnx/onnx.proto`
//! (IR version 8). [`read_fields`] decodes the wire format back into fields, for tests and for
//! checking files.

/// Wire types (protobuf encoding: the low 3 bits of a field's key).
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Appends `v` as a base-128 varint: 7 bits per byte, low bits first, the high bit set on
/// every byte but the last.
pub fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// One message being encoded: its fields in the order they are added.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    fn key(&mut self, field: u32, wire: u8) {
        put_varint(&mut self.buf, ((field as u64) << 3) | wire as u64);
    }

    /// An `int64`, `int32` or enum field. Negative values are their 64-bit two's complement
    /// (ten bytes), as protobuf encodes every signed non-zigzag integer.
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.key(field, VARINT);
        put_varint(&mut self.buf, v as u64);
        self
    }

    /// A `float` field: 4 bytes, little-endian.
    pub fn float(&mut self, field: u32, v: f32) -> &mut Self {
        self.key(field, I32);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(&mut self, field: u32, v: &[u8]) -> &mut Self {
        self.key(field, LEN);
        put_varint(&mut self.buf, v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }

    /// A `string` field (UTF-8 bytes).
    pub fn string(&mut self, field: u32, v: &str) -> &mut Self {
        self.bytes(field, v.as_bytes())
    }

    /// An embedded message.
    pub fn message(&mut self, field: u32, m: &Encoder) -> &mut Self {
        self.bytes(field, &m.buf)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// `TensorProto.DataType` values used here.
pub const FLOAT: i64 = 1;
pub const INT64: i64 = 7;

/// A named constant tensor (`TensorProto`), data in `raw_data` (little-endian).
pub fn tensor_f32(name: &str, dims: &[usize], data: &[f32]) -> Encoder {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let mut raw = Vec::with_capacity(data.len() * 4);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    tensor(name, dims, FLOAT, &raw)
}

/// An `int64` constant tensor (shapes and axes given to operators as inputs).
pub fn tensor_i64(name: &str, dims: &[usize], data: &[i64]) -> Encoder {
    debug_assert_eq!(dims.iter().product::<usize>(), data.len());
    let mut raw = Vec::with_capacity(data.len() * 8);
    for v in data {
        raw.extend_from_slice(&v.to_le_bytes());
    }
    tensor(name, dims, INT64, &raw)
}

fn tensor(name: &str, dims: &[usize], data_type: i64, raw: &[u8]) -> Encoder {
    let mut t = Encoder::new();
    for &d in dims {
        t.int(1, d as i64); // dims
    }
    t.int(2, data_type).string(8, name).bytes(9, raw); // data_type, name, raw_data
    t
}

/// One attribute of a node (`AttributeProto`: name 1, f 2, i 3, s 4, floats 7, ints 8,
/// type 20).
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Ints(Vec<i64>),
    String(String),
}

impl Attr {
    fn encode(&self, name: &str) -> Encoder {
        let mut a = Encoder::new();
        a.string(1, name);
        // AttributeType: FLOAT 1, INT 2, STRING 3, INTS 7.
        match self {
            Attr::Float(v) => a.float(2, *v).int(20, 1),
            Attr::Int(v) => a.int(3, *v).int(20, 2),
            Attr::String(v) => a.string(4, v).int(20, 3),
            Attr::Ints(v) => {
                // Unpacked (one key per value): proto2's default for repeated scalars, which
                // every parser accepts.
                for &x in v {
                    a.int(8, x);
                }
                a.int(20, 7)
            }
        };
        a
    }
}

/// One operator (`NodeProto`: input 1, output 2, name 3, op_type 4, attribute 5).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: &'static str,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

impl Node {
    pub fn encode(&self) -> Encoder {
        let mut n = Encoder::new();
        for i in &self.inputs {
            n.string(1, i);
        }
        for o in &self.outputs {
            n.string(2, o);
        }
        n.string(3, &self.name).string(4, self.op);
        for (name, a) in &self.attrs {
            n.message(5, &a.encode(name));
        }
        n
    }
}

/// A dimension of a graph input or output: a fixed size or a named, free one (the batch).
#[derive(Clone, Debug, PartialEq)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A float tensor's name, shape and documentation (`ValueInfoProto` with a `TypeProto.Tensor`).
pub fn value_info(name: &str, dims: &[Dim], doc: &str) -> Encoder {
    let mut shape = Encoder::new();
    for d in dims {
        let mut dim = Encoder::new();
        match d {
            Dim::Fixed(v) => dim.int(1, *v as i64), // dim_value
            Dim::Named(p) => dim.string(2, p),      // dim_param
        };
        shape.message(1, &dim);
    }
    let mut tensor = Encoder::new();
    tensor.int(1, FLOAT).message(2, &shape); // elem_type, shape
    let mut ty = Encoder::new();
    ty.message(1, &tensor); // tensor_type
    let mut v = Encoder::new();
    v.string(1, name).message(2, &ty).string(3, doc);
    v
}

/// A whole model (`ModelProto`) around one graph (`GraphProto`: node 1, name 2,
/// initializer 5, doc_string 10, input 11, output 12).
pub struct Model<'a> {
    pub ir_version: i64,
    pub opset: i64,
    pub producer: &'a str,
    pub producer_version: &'a str,
    pub doc: &'a str,
    pub graph_name: &'a str,
    pub nodes: &'a [Node],
    pub initializers: &'a [Encoder],
    pub inputs: &'a [Encoder],
    pub outputs: &'a [Encoder],
    /// `metadata_props`, key and value.
    pub metadata: &'a [(String, String)],
}

impl Model<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut g = Encoder::new();
        for n in self.nodes {
            g.message(1, &n.encode());
        }
        g.string(2, self.graph_name);
        for t in self.initializers {
            g.message(5, t);
        }
        g.string(10, self.doc);
        for i in self.inputs {
            g.message(11, i);
        }
        for o in self.outputs {
            g.message(12, o);
        }
        let mut opset = Encoder::new();
        opset.string(1, "").int(2, self.opset); // the default domain, ai.onnx
        let mut m = Encoder::new();
        m.int(1, self.ir_version)
            .string(2, self.producer)
            .string(3, self.producer_version)
            .string(6, self.doc)
            .message(7, &g)
            .message(8, &opset);
        for (k, v) in self.metadata {
            let mut e = Encoder::new();
            e.string(1, k).string(2, v);
            m.message(14, &e);
        }
        m.into_bytes()
    }
}

/// A decoded field: its number and its value by wire type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    /// A string, bytes, packed scalars or an embedded message: which one is the schema's to say.
    Len(&'a [u8]),
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Varint(v) => Some(*v as i64),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Len(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_float(&self) -> Option<f32> {
        match self {
            Value::Fixed32(v) => Some(f32::from_bits(*v)),
            _ => None,
        }
    }
}

/// Reads a varint at `*pos`, advancing it; `None` if the bytes end first or it runs past ten
/// bytes (64 bits).
pub fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        if shift == 63 && b > 1 {
            return None;
        }
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// `n` bytes at `*pos`, advancing it.
fn take_slice<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n).filter(|&e| e <= bytes.len())?;
    let s = &bytes[*pos..end];
    *pos = end;
    Some(s)
}

fn take<const N: usize>(bytes: &[u8], pos: &mut usize) -> Option<[u8; N]> {
    take_slice(bytes, pos, N).map(|s| s.try_into().expect("N bytes"))
}

/// Every field of one message, in order; an error names the byte offset where the bytes stop
/// being a protobuf message.
pub fn read_fields(bytes: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let at = pos;
        let bad = |what: &str| format!("byte {at}: {what}");
        let key = get_varint(bytes, &mut pos).ok_or_else(|| bad("truncated key"))?;
        let field = u32::try_from(key >> 3).map_err(|_| bad("field number too large"))?;
        if field == 0 {
            return Err(bad("field number 0"));
        }
        let value = match (key & 7) as u8 {
            VARINT => Value::Varint(get_varint(bytes, &mut pos).ok_or_else(|| bad("bad varint"))?),
            I64 => Value::Fixed64(u64::from_le_bytes(
                take::<8>(bytes, &mut pos).ok_or_else(|| bad("field runs past the end"))?,
            )),
            I32 => Value::Fixed32(u32::from_le_bytes(
                take::<4>(bytes, &mut pos).ok_or_else(|| bad("field runs past the end"))?,
            )),
            LEN => {
                let n = get_varint(bytes, &mut pos).ok_or_else(|| bad("bad length"))?;
                let n = usize::try_from(n).map_err(|_| bad("length too large"))?;
                Value::Len(
                    take_slice(bytes, &mut pos, n).ok_or_else(|| bad("field runs past the end"))?,
                )
            }
            w => return Err(bad(&format!("unknown wire type {w}"))),
        };
        fields.push((field, value));
    }
    Ok(fields)
}

/// The values of field `field` in a decoded message.
pub fn all<'a, 'b>(
    fields: &'b [(u32, Value<'a>)],
    field: u32,
) -> impl Iterator<Item = &'b Value<'a>> + 'b {
    fields
        .iter()
        .filter(move |(f, _)| *f == field)
        .map(|(_, v)| v)
}

/// The first value of field `field`, if any.
pub fn first<'a, 'b>(fields: &'b [(u32, Value<'a>)], field: u32) -> Option<&'b Value<'a>> {
    all(fields, field).next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(v: u64) -> Vec<u8> {
        let mut b = Vec::new();
        put_varint(&mut b, v);
        b
    }

    #[test]
    fn varints_are_the_protobuf_documentations_examples() {
        assert_eq!(varint(0), [0x00]);
        assert_eq!(varint(1), [0x01]);
        assert_eq!(varint(127), [0x7f]);
        assert_eq!(varint(128), [0x80, 0x01]);
        // 150 is the encoding guide's example: 96 01.
        assert_eq!(varint(150), [0x96, 0x01]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
        assert_eq!(*varint(u64::MAX).last().unwrap(), 0x01);
    }

    #[test]
    fn varints_round_trip_at_every_length() {
        let mut values = vec![0, 1, u64::MAX, i64::MAX as u64, (-1i64) as u64];
        for bits in 1..64 {
            values.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
        }
        for v in values {
            let b = varint(v);
            let mut pos = 0;
            assert_eq!(get_varint(&b, &mut pos), Some(v), "{v}");
            assert_eq!(pos, b.len());
            // One byte short is an error, not a different number.
            let mut pos = 0;
            assert_eq!(get_varint(&b[..b.len() - 1], &mut pos), None, "{v}");
        }
        // Eleven bytes, or a tenth byte with more than the 64th bit, is not a u64.
        let mut pos = 0;
        assert_eq!(get_varint(&[0xff; 11], &mut pos), None);
        let mut pos = 0;
        let mut b = vec![0xff; 9];
        b.push(0x02);
        assert_eq!(get_varint(&b, &mut pos), None);
    }

    #[test]
    fn fields_have_the_documented_keys_and_lengths() {
        // The encoding guide's message `Test1 { int32 a = 1; }` with a = 150: 08 96 01.
        let mut m = Encoder::new();
        m.int(1, 150);
        assert_eq!(m.clone().into_bytes(), [0x08, 0x96, 0x01]);
        // `Test2 { string b = 2; }` with b = "testing": 12 07 74 65 73 74 69 6e 67.
        let mut m = Encoder::new();
        m.string(2, "testing");
        assert_eq!(
            m.clone().into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // `Test3 { Test1 c = 3; }` with c.a = 150: 1a 03 08 96 01.
        let mut inner = Encoder::new();
        inner.int(1, 150);
        let mut m = Encoder::new();
        m.message(3, &inner);
        assert_eq!(m.into_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        // A float is wire type 5 and 4 little-endian bytes; field 16 needs a two-byte key.
        let mut m = Encoder::new();
        m.float(16, 1.0);
        assert_eq!(m.into_bytes(), [0x85, 0x01, 0x00, 0x00, 0x80, 0x3f]);
        // A negative int64 is ten bytes of two's complement.
        let mut m = Encoder::new();
        m.int(3, -1);
        let b = m.into_bytes();
        assert_eq!(b.len(), 11);
        assert_eq!(read_fields(&b).unwrap()[0].1.as_int(), Some(-1));
    }

    #[test]
    fn a_length_prefix_longer_than_one_byte_round_trips() {
        let payload: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let mut m = Encoder::new();
        m.bytes(9, &payload).int(2, 7);
        let b = m.into_bytes();
        // key 0x4a, then 300 as a two-byte varint.
        assert_eq!(&b[..3], &[0x4a, 0xac, 0x02]);
        let f = read_fields(&b).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], (9, Value::Len(&payload)));
        assert_eq!(f[1], (2, Value::Varint(7)));
    }

    #[test]
    fn truncated_or_malformed_messages_are_errors() {
        let mut m = Encoder::new();
        m.string(1, "abc").float(2, 2.5);
        let b = m.into_bytes();
        assert!(read_fields(&b).is_ok());
        // The string field is 5 bytes: every other prefix cuts a field short, and none may
        // decode as something else.
        for n in (1..b.len()).filter(|&n| n != 5) {
            assert!(read_fields(&b[..n]).is_err(), "prefix of {n} bytes");
        }
        assert_eq!(read_fields(&b[..5]).unwrap().len(), 1);
        assert!(read_fields(&[0x00]).unwrap_err().contains("field number 0"));
        assert!(read_fields(&[0x0b]).unwrap_err().contains("wire type 3"));
        // A length far past the end.
        assert!(read_fields(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])
            .unwrap_err()
            .contains("past the end"));
    }

    #[test]
    fn tensors_attributes_and_nodes_decode_to_what_was_encoded() {
        let t = tensor_f32("w", &[2, 3], &[1.0, -2.0, 0.5, 0.0, 3.25, -0.125]).into_bytes();
        let f = read_fields(&t).unwrap();
        let dims: Vec<i64> = all(&f, 1).map(|v| v.as_int().unwrap()).collect();
        assert_eq!(dims, [2, 3]);
        assert_eq!(first(&f, 2).unwrap().as_int(), Some(FLOAT));
        assert_eq!(first(&f, 8).unwrap().as_str(), Some("w"));
        let raw = first(&f, 9).unwrap().as_bytes().unwrap();
        let back: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(back, [1.0, -2.0, 0.5, 0.0, 3.25, -0.125]);

        let t = tensor_i64("axes", &[2], &[2, -1]).into_bytes();
        let f = read_fields(&t).unwrap();
        assert_eq!(first(&f, 2).unwrap().as_int(), Some(INT64));
        let raw = first(&f, 9).unwrap().as_bytes().unwrap();
        assert_eq!(i64::from_le_bytes(raw[8..].try_into().unwrap()), -1);

        let node = Node {
            op: "Conv",
            name: "c".into(),
            inputs: vec!["x".into(), "w".into()],
            outputs: vec!["y".into()],
            attrs: vec![
                ("pads", Attr::Ints(vec![1, 1, 1, 1])),
                ("alpha", Attr::Float(0.5)),
                ("axis", Attr::Int(-1)),
                ("mode", Attr::String("m".into())),
            ],
        };
        let b = node.encode().into_bytes();
        let f = read_fields(&b).unwrap();
        let strs = |n| all(&f, n).map(|v| v.as_str().unwrap()).collect::<Vec<_>>();
        assert_eq!(strs(1), ["x", "w"]);
        assert_eq!(strs(2), ["y"]);
        assert_eq!(strs(3), ["c"]);
        assert_eq!(strs(4), ["Conv"]);
        let attrs: Vec<_> = all(&f, 5)
            .map(|v| read_fields(v.as_bytes().unwrap()).unwrap())
            .collect();
        assert_eq!(attrs.len(), 4);
        let pads = &attrs[0];
        assert_eq!(first(pads, 1).unwrap().as_str(), Some("pads"));
        assert_eq!(first(pads, 20).unwrap().as_int(), Some(7));
        let ints: Vec<i64> = all(pads, 8).map(|v| v.as_int().unwrap()).collect();
        assert_eq!(ints, [1, 1, 1, 1]);
        assert_eq!(first(&attrs[1], 2).unwrap().as_float(), Some(0.5));
        assert_eq!(first(&attrs[1], 20).unwrap().as_int(), Some(1));
        assert_eq!(first(&attrs[2], 3).unwrap().as_int(), Some(-1));
        assert_eq!(first(&attrs[2], 20).unwrap().as_int(), Some(2));
        assert_eq!(first(&attrs[3], 4).unwrap().as_str(), Some("m"));
        assert_eq!(first(&attrs[3], 20).unwrap().as_int(), Some(3));
    }

    #[test]
    fn a_value_info_carries_a_named_batch_dimension() {
        let v = value_info("input", &[Dim::Named("N"), Dim::Fixed(3)], "doc").into_bytes();
        let f = read_fields(&v).unwrap();
        assert_eq!(first(&f, 1).unwrap().as_str(), Some("input"));
        assert_eq!(first(&f, 3).unwrap().as_str(), Some("doc"));
        let ty = read_fields(first(&f, 2).unwrap().as_bytes().unwrap()).unwrap();
        let tensor = read_fields(first(&ty, 1).unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(first(&tensor, 1).unwrap().as_int(), Some(FLOAT));
        let shape = read_fields(first(&tensor, 2).unwrap().as_bytes().unwrap()).unwrap();
        let dims: Vec<_> = all(&shape, 1)
            .map(|d| read_fields(d.as_bytes().unwrap()).unwrap())
            .collect();
        assert_eq!(dims[0], vec![(2, Value::Len(b"N"))]);
        assert_eq!(dims[1], vec![(1, Value::Varint(3))]);
    }
}
