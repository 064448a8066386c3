package testenv

import "strings"

// TortureDDL creates torture.t, with a column of every type databus
// promises to carry exactly.
const TortureDDL = `CREATE TABLE torture.t (
 id INT NOT NULL PRIMARY KEY,
 ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
 i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
 d65 DECIMAL(65,30), d0 DECIMAL(20,0), dn DECIMAL(5,2),
 f FLOAT, dbl DOUBLE,
 b1 BIT(1), b13 BIT(13), b64 BIT(64),
 dt DATE, dtm0 DATETIME, dtm6 DATETIME(6), ts0 TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
 tm TIME, tm6 TIME(6), yr YEAR,
 c CHAR(10), vc VARCHAR(300), tx TEXT, lt LONGTEXT, l1 VARCHAR(50) CHARACTER SET latin1,
 bn BINARY(8), vb VARBINARY(300), bl BLOB, lb LONGBLOB,
 j JSON, e ENUM('a','b','c d'), st SET('x','y','z'),
 g GEOMETRY, pt POINT,
 gv BIGINT AS (i + 1) VIRTUAL, gs BIGINT AS (i * 2) STORED
) DEFAULT CHARSET=utf8mb4`

// TortureCols are the columns written by the test (not the generated ones).
const TortureCols = "id,ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d65,d0,dn,f,dbl,b1,b13,b64,dt,dtm0,dtm6,ts0,ts6,tm,tm6,yr,c,vc,tx,lt,l1,bn,vb,bl,lb,j,e,st,g,pt"

// TortureRows are rows of TortureCols: extremes, awkward text and bytes,
// partial dates and NULLs.
var TortureRows = []string{
	// minimums, negatives, zero dates
	`(1,-128,0,-32768,0,-8388608,0,-2147483648,0,-9223372036854775808,0,
	 '-99999999999999999999999999999999999.999999999999999999999999999999',-99999999999999999999,-999.99,
	 -3.40282e38,-1.7976931348623157e308,0,0,0,
	 '0000-00-00','0000-00-00 00:00:00','0000-00-00 00:00:00.000000','1970-01-01 05:30:01','1970-01-01 05:30:01.000001',
	 '-838:59:59','-838:59:58.999999',1901,
	 '', '', '', '', '', '', '', '', '',
	 '{}','a','',ST_GeomFromText('POINT(0 0)'),ST_GeomFromText('POINT(-1.5 2.25)'))`,
	// maximums, awkward text and bytes
	`(2,127,255,32767,65535,8388607,16777215,2147483647,4294967295,9223372036854775807,18446744073709551615,
	 '99999999999999999999999999999999999.999999999999999999999999999999',99999999999999999999,999.99,
	 3.40282e38,1.7976931348623157e308,1,8191,18446744073709551615,
	 '9999-12-31','9999-12-31 23:59:59','9999-12-31 23:59:59.999999','2038-01-19 03:14:07','2038-01-19 03:14:07.999999',
	 '838:59:59','838:59:58.999999',2155,
	 'quote''s','back\\slash "dq" \0 nul \n\r\t \Z end','😀 emoji 𝄞 ünïcödé 中文','` + strings.Repeat("long text ", 3000) + `','café ÿ €',
	 X'00FF00FF00FF00FF',X'00010203FEFF5C27',X'C328',REPEAT(X'DEADBEEF',100000),
	 '{"a":[1,2.5,"x",null,true],"big":123456789012345678901234567890,"u":"\\u00e9😀","nested":{"k":{}}}','c d','x,y,z',
	 ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 3,2 2))'),ST_GeomFromText('POINT(1e10 -1e-10)'))`,
	// ordinary values and partial dates
	`(3,1,2,3,4,5,6,7,8,9,10,'0.000000000000000000000000000001',0,0.01,
	 0.1,0.1,1,1,1,
	 '2024-00-00','2024-02-29 12:00:00','2024-02-29 12:00:00.5','2024-06-01 12:00:00','2024-06-01 12:00:00.123456',
	 '00:00:00','100:00:00.000001',0,
	 'a','b','c','d','e',X'61',X'62',X'63',X'64',
	 'null','b','x',NULL,NULL)`,
	// NULL everywhere it is allowed
	`(4,` + strings.Repeat("NULL,", 39) + `NULL)`,
}
