// Turning the values of a databus event into JavaScript values without
// losing anything: docs/events.md, "Values per MySQL type", and
// docs/consumers.md, "Values".

// Column types whose values are bytes, sent as standard base64.
const byteTypes = new Set(["binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry"]);

// decodeValue returns the JavaScript value of one value of a row image,
// given its column (an element of the event's `columns`):
//
//   bigint, bigint unsigned, bit(n)  string of digits → BigInt
//   decimal(p,s)                     string, kept as it is: exact (give it to a decimal library to compute)
//   binary, varbinary, blobs,        base64 → Buffer (every byte, zero bytes and non-UTF-8 included)
//   geometry
//   json                             JSON text → JSON.parse (numbers beyond 2^53 need a big-number parser)
//   set                              "a,c" → ["a", "c"]; "" (no member) → []
//   date, datetime, timestamp, time  string, kept: zero dates ("0000-00-00", "2024-00-00") are not JS Dates
//   everything else                  as is (numbers, text, enum members)
//
// SQL NULL is null for every type.
export function decodeValue(column, value) {
  if (value === null || value === undefined) {
    return null;
  }
  const type = column.type;
  if (type === "bigint" || type === "bigint unsigned" || type.startsWith("bit(")) {
    return BigInt(value);
  }
  if (byteTypes.has(type)) {
    return Buffer.from(value, "base64");
  }
  if (type === "json") {
    return JSON.parse(value);
  }
  if (type === "set") {
    return value === "" ? [] : value.split(",");
  }
  return value; // decimal(p,s) and dates stay strings; numbers and text as they are
}

// decodeRow returns a row image (`before` or `after`) with every value
// decoded, or null when the event has none.
export function decodeRow(columns, image) {
  if (!image) {
    return null;
  }
  const row = {};
  for (const column of columns) {
    if (column.name in image) {
      row[column.name] = decodeValue(column, image[column.name]);
    }
  }
  return row;
}

// decodeKey decodes the primary key values (`key`) of a row event.
export function decodeKey(columns, key) {
  return key ? decodeRow(columns.filter((c) => c.name in key), key) : null;
}

// printable returns a decoded value in a form JSON.stringify writes
// without loss: a BigInt as its decimal digits, bytes as hex, anything
// else as it is.
export function printable(value) {
  if (typeof value === "bigint") {
    return value.toString();
  }
  if (Buffer.isBuffer(value)) {
    return value.toString("hex");
  }
  return value;
}
