// Package rowcodec encodes MySQL values without loss: [Encode] turns a
// value as go-mysql's binlog decoder gives it into its JSON form for events
// and its SQL literal for statements, and [QuoteIdent], [QuoteString] and
// [QuoteBytes] write identifiers and literals that read back exactly
// whatever the target's sql_mode and connection character set.
//
// A [Column] describes what the codec needs of a column. It comes from a
// binlog table map ([ColumnsFromTableMap]) or from information_schema
// ([ColumnFromSchema]); both give the same Column for the same definition,
// and [SelectExpr] with [FromText] read a column with SELECT into the value
// the binlog decoder gives, so snapshot rows and binlog rows encode alike.
// A value that cannot be represented exactly is an error wrapping
// [ErrUndecodable]. The package is pure: it holds no state.
package rowcodec
