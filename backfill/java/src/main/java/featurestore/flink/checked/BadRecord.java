package featurestore.flink.checked;

/**
 * Why a record is a dead letter: a short, stable {@link #reason} code (counted, filtered on) and a
 * human-readable {@link #detail} (which field, which byte). Thrown while decoding; carries no stack
 * trace, since bad records are expected input, not bugs.
 */
final class BadRecord extends Exception {
    private static final long serialVersionUID = 1L;

    /** The value is null (a Kafka tombstone): an event topic has no deletes. */
    static final String NULL_VALUE = "null-value";
    /** The bytes end before the record does. */
    static final String TRUNCATED = "truncated";
    /** Bytes are left after the record's last field (often: written with another schema). */
    static final String TRAILING_BYTES = "trailing-bytes";
    /** A string, bytes or array length is negative. */
    static final String BAD_LENGTH = "bad-length";
    /** A variable-length integer runs past 10 bytes, or an int past 32 bits. */
    static final String BAD_VARINT = "bad-varint";
    /** A boolean byte other than 0 or 1. */
    static final String BAD_BOOLEAN = "bad-boolean";
    /** A union branch index the schema does not have. */
    static final String BAD_UNION_BRANCH = "bad-union-branch";
    /** An enum index the schema does not have. */
    static final String BAD_ENUM = "bad-enum";
    /** A string that is not valid UTF-8. */
    static final String BAD_UTF8 = "bad-utf8";
    /** JSON: not a parseable JSON document. */
    static final String BAD_JSON = "bad-json";
    /** JSON: a document that is not an object. */
    static final String NOT_AN_OBJECT = "not-an-object";
    /** JSON: a field of the schema that is absent and not nullable. */
    static final String MISSING_FIELD = "missing-field";
    /** JSON: null in a field that is not nullable. */
    static final String NULL_FIELD = "null-field";
    /** JSON: a value of the wrong type (a string for a long, 1.5 for an int, 2^40 for an int). */
    static final String WRONG_TYPE = "wrong-type";

    final String reason;
    final String detail;

    BadRecord(String reason, String detail) {
        super(reason + ": " + detail, null, false, false);
        this.reason = reason;
        this.detail = detail;
    }

    /** The same reason, the detail prefixed with where it happened. */
    BadRecord in(String where) {
        return new BadRecord(reason, where + ": " + detail);
    }
}
