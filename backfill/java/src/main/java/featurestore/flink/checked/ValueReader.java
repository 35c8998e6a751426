package featurestore.flink.checked;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.data.GenericArrayData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.TimestampData;
import org.apache.flink.table.types.logical.ArrayType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;

/**
 * Reads one value of an Avro type, from Avro binary or from JSON, straight into Flink's internal
 * data structure for the declared column type (Long, Integer, StringData, GenericArrayData, ...).
 * {@link #compile} checks once, when the job starts, that the Avro type fits the column; decoding
 * then only checks the bytes.
 */
abstract class ValueReader {
    /** The next value in Avro's binary encoding. */
    abstract Object avro(AvroInput in) throws BadRecord;

    /** A JSON value ({@code node} is neither missing nor JSON null; {@link Nullable} handles null). */
    abstract Object json(JsonNode node) throws BadRecord;

    boolean nullable() {
        return false;
    }

    abstract String avroType();

    /**
     * The reader of Avro type {@code avro} for a column of type {@code target} (null: a field that is
     * read to check it and then dropped, in its natural type).
     */
    static ValueReader compile(Schema avro, LogicalType target, String column) {
        Schema.Type type = avro.getType();
        if (type == Schema.Type.UNION) {
            List<Schema> branches = avro.getTypes();
            int nullIndex = -1;
            for (int i = 0; i < branches.size(); i++) {
                if (branches.get(i).getType() == Schema.Type.NULL) {
                    nullIndex = i;
                }
            }
            if (branches.size() != 2 || nullIndex < 0) {
                throw invalid(column, "the union " + avro + " is not supported; use [\"null\", T]");
            }
            if (target != null && !target.isNullable()) {
                throw invalid(column, "the Avro type " + avro + " is nullable but the column is declared NOT NULL");
            }
            return new Nullable(nullIndex, compile(branches.get(1 - nullIndex), target, column));
        }
        LogicalTypeRoot root = target == null ? null : target.getTypeRoot();
        switch (type) {
            case LONG:
                if (root == null || root == LogicalTypeRoot.BIGINT) {
                    return new LongReader(false);
                }
                if (root == LogicalTypeRoot.TIMESTAMP_WITHOUT_TIME_ZONE
                        || root == LogicalTypeRoot.TIMESTAMP_WITH_LOCAL_TIME_ZONE) {
                    return new LongReader(true);
                }
                break;
            case INT:
                if (root == null || root == LogicalTypeRoot.INTEGER) {
                    return new IntReader(false);
                }
                if (root == LogicalTypeRoot.BIGINT) {
                    return new IntReader(true);
                }
                break;
            case FLOAT:
                if (root == null || root == LogicalTypeRoot.FLOAT) {
                    return new FloatReader(false);
                }
                if (root == LogicalTypeRoot.DOUBLE) {
                    return new FloatReader(true);
                }
                break;
            case DOUBLE:
                if (root == null || root == LogicalTypeRoot.DOUBLE) {
                    return new DoubleReader();
                }
                break;
            case BOOLEAN:
                if (root == null || root == LogicalTypeRoot.BOOLEAN) {
                    return new BooleanReader();
                }
                break;
            case STRING:
                if (root == null || root == LogicalTypeRoot.VARCHAR || root == LogicalTypeRoot.CHAR) {
                    return new StringReader();
                }
                break;
            case ENUM:
                if (root == null || root == LogicalTypeRoot.VARCHAR || root == LogicalTypeRoot.CHAR) {
                    return new EnumReader(avro.getEnumSymbols());
                }
                break;
            case BYTES:
                if (root == null || root == LogicalTypeRoot.VARBINARY || root == LogicalTypeRoot.BINARY) {
                    return new BytesReader();
                }
                break;
            case ARRAY:
                if (root == null || root == LogicalTypeRoot.ARRAY) {
                    LogicalType element = target == null ? null : ((ArrayType) target).getElementType();
                    return new ArrayReader(compile(avro.getElementType(), element, column + "[]"));
                }
                break;
            default:
                throw invalid(column, "the Avro type " + avro + " is not supported");
        }
        throw invalid(column, "the Avro type " + avro + " cannot be read into a column of type " + target);
    }

    private static ValidationException invalid(String column, String what) {
        return new ValidationException(CheckedFormatFactory.IDENTIFIER + ": column '" + column + "': " + what);
    }

    static BadRecord wrongType(String expected, JsonNode node) {
        String text = node.toString();
        if (text.length() > 40) {
            text = text.substring(0, 40) + "...";
        }
        return new BadRecord(BadRecord.WRONG_TYPE, "expected " + expected + ", got " + node.getNodeType() + " " + text);
    }

    // ----------------------------------------------------------------------------------------------

    static final class Nullable extends ValueReader {
        private final int nullIndex;
        private final ValueReader inner;

        Nullable(int nullIndex, ValueReader inner) {
            this.nullIndex = nullIndex;
            this.inner = inner;
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            int at = in.position();
            long branch = in.readLong();
            if (branch == nullIndex) {
                return null;
            }
            if (branch != 1 - nullIndex) {
                throw new BadRecord(BadRecord.BAD_UNION_BRANCH,
                        "union branch " + branch + " at byte " + at + "; the schema has 0 and 1");
            }
            return inner.avro(in);
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            return inner.json(node);
        }

        @Override
        boolean nullable() {
            return true;
        }

        @Override
        String avroType() {
            return "[null, " + inner.avroType() + "]";
        }
    }

    static final class LongReader extends ValueReader {
        private final boolean timestamp;

        LongReader(boolean timestamp) {
            this.timestamp = timestamp;
        }

        private Object out(long v) {
            return timestamp ? TimestampData.fromEpochMillis(v) : (Object) v;
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            return out(in.readLong());
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isIntegralNumber() || !node.canConvertToLong()) {
                throw wrongType("a long", node);
            }
            return out(node.longValue());
        }

        @Override
        String avroType() {
            return "long";
        }
    }

    static final class IntReader extends ValueReader {
        private final boolean widen;

        IntReader(boolean widen) {
            this.widen = widen;
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            int v = in.readInt();
            return widen ? (Object) (long) v : (Object) v;
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isIntegralNumber() || !node.canConvertToInt()) {
                throw wrongType("an int", node);
            }
            int v = node.intValue();
            return widen ? (Object) (long) v : (Object) v;
        }

        @Override
        String avroType() {
            return "int";
        }
    }

    static final class FloatReader extends ValueReader {
        private final boolean widen;

        FloatReader(boolean widen) {
            this.widen = widen;
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            float v = in.readFloat();
            return widen ? (Object) (double) v : (Object) v;
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isNumber()) {
                throw wrongType("a float", node);
            }
            float v = node.floatValue();
            return widen ? (Object) (double) v : (Object) v;
        }

        @Override
        String avroType() {
            return "float";
        }
    }

    static final class DoubleReader extends ValueReader {
        @Override
        Object avro(AvroInput in) throws BadRecord {
            return in.readDouble();
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isNumber()) {
                throw wrongType("a double", node);
            }
            return node.doubleValue();
        }

        @Override
        String avroType() {
            return "double";
        }
    }

    static final class BooleanReader extends ValueReader {
        @Override
        Object avro(AvroInput in) throws BadRecord {
            return in.readBoolean();
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isBoolean()) {
                throw wrongType("a boolean", node);
            }
            return node.booleanValue();
        }

        @Override
        String avroType() {
            return "boolean";
        }
    }

    static final class StringReader extends ValueReader {
        @Override
        Object avro(AvroInput in) throws BadRecord {
            return StringData.fromBytes(in.readUtf8());
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isTextual()) {
                throw wrongType("a string", node);
            }
            return StringData.fromString(node.textValue());
        }

        @Override
        String avroType() {
            return "string";
        }
    }

    static final class EnumReader extends ValueReader {
        private final List<String> symbols;
        private final StringData[] values;

        EnumReader(List<String> symbols) {
            this.symbols = symbols;
            this.values = new StringData[symbols.size()];
            for (int i = 0; i < values.length; i++) {
                values[i] = StringData.fromBytes(symbols.get(i).getBytes(StandardCharsets.UTF_8));
            }
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            int at = in.position();
            int index = in.readInt();
            if (index < 0 || index >= values.length) {
                throw new BadRecord(BadRecord.BAD_ENUM,
                        "enum index " + index + " at byte " + at + "; the schema has " + values.length + " symbols");
            }
            return values[index];
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isTextual()) {
                throw wrongType("an enum symbol", node);
            }
            int index = symbols.indexOf(node.textValue());
            if (index < 0) {
                throw new BadRecord(BadRecord.BAD_ENUM, "'" + node.textValue() + "' is not one of " + symbols);
            }
            return values[index];
        }

        @Override
        String avroType() {
            return "enum";
        }
    }

    static final class BytesReader extends ValueReader {
        @Override
        Object avro(AvroInput in) throws BadRecord {
            return in.readBytes();
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isTextual()) {
                throw wrongType("base64 bytes", node);
            }
            try {
                return Base64.getDecoder().decode(node.textValue());
            } catch (IllegalArgumentException e) {
                throw wrongType("base64 bytes", node);
            }
        }

        @Override
        String avroType() {
            return "bytes";
        }
    }

    static final class ArrayReader extends ValueReader {
        private final ValueReader items;

        ArrayReader(ValueReader items) {
            this.items = items;
        }

        @Override
        Object avro(AvroInput in) throws BadRecord {
            Object[] out = new Object[0];
            int size = 0;
            while (true) {
                int at = in.position();
                long count = in.readLong();
                if (count == 0) {
                    break;
                }
                if (count < 0) {
                    count = -count;
                    in.readLength(); // the block's size in bytes, for skipping; checked, not used
                }
                // every item takes at least one byte (items of type null are not supported)
                if (count > in.remaining()) {
                    throw new BadRecord(BadRecord.TRUNCATED,
                            "an array block of " + count + " items at byte " + at + " with " + in.remaining()
                                    + " bytes left");
                }
                if (size + count > out.length) {
                    out = java.util.Arrays.copyOf(out, (int) (size + count));
                }
                for (long i = 0; i < count; i++) {
                    out[size++] = items.avro(in);
                }
            }
            return new GenericArrayData(size == out.length ? out : java.util.Arrays.copyOf(out, size));
        }

        @Override
        Object json(JsonNode node) throws BadRecord {
            if (!node.isArray()) {
                throw wrongType("an array", node);
            }
            Object[] out = new Object[node.size()];
            for (int i = 0; i < out.length; i++) {
                JsonNode item = node.get(i);
                if (item.isNull()) {
                    if (!items.nullable()) {
                        throw new BadRecord(BadRecord.NULL_FIELD, "item " + i + " is null; the items are " + items.avroType());
                    }
                    out[i] = null;
                } else {
                    try {
                        out[i] = items.json(item);
                    } catch (BadRecord e) {
                        throw e.in("item " + i);
                    }
                }
            }
            return new GenericArrayData(out);
        }

        @Override
        String avroType() {
            return "array<" + items.avroType() + ">";
        }
    }
}
