package featurestore.flink.checked;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.json.JsonMapper;
import java.io.IOException;
import java.util.List;
import org.apache.avro.Schema;
import org.apache.avro.SchemaParseException;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.types.logical.RowType;

/**
 * One record of the source's Avro schema, read from Avro binary or from JSON into the declared
 * columns: every field of the schema is read and checked, in schema order; the ones the table
 * declares land in their column, the others are dropped.
 */
final class RecordReader {
    enum Encoding {
        AVRO,
        JSON
    }

    private final Encoding encoding;
    private final String[] names;
    private final ValueReader[] readers;
    private final int[] slots;
    private final AvroInput input = new AvroInput();
    private final JsonMapper json;

    RecordReader(Encoding encoding, String schemaText, RowType columns) {
        this.encoding = encoding;
        Schema schema = parse(schemaText);
        List<Schema.Field> fields = schema.getFields();
        names = new String[fields.size()];
        readers = new ValueReader[fields.size()];
        slots = new int[fields.size()];
        List<String> columnNames = columns.getFieldNames();
        for (String column : columnNames) {
            if (schema.getField(column) == null) {
                throw new ValidationException(CheckedFormatFactory.IDENTIFIER + ": column '" + column
                        + "' is not a field of the Avro schema " + schema.getFullName());
            }
        }
        for (int i = 0; i < fields.size(); i++) {
            Schema.Field field = fields.get(i);
            names[i] = field.name();
            slots[i] = columnNames.indexOf(field.name());
            readers[i] = ValueReader.compile(field.schema(), slots[i] < 0 ? null : columns.getTypeAt(slots[i]),
                    field.name());
        }
        json = encoding == Encoding.JSON
                ? JsonMapper.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build()
                : null;
    }

    /** The record schema in {@code text}, or a ValidationException saying what is wrong with it. */
    static Schema parse(String text) {
        Schema schema;
        try {
            schema = new Schema.Parser().parse(text);
        } catch (SchemaParseException | NullPointerException e) {
            throw new ValidationException(CheckedFormatFactory.IDENTIFIER + ": not a valid Avro schema: " + e.getMessage());
        }
        if (schema.getType() != Schema.Type.RECORD) {
            throw new ValidationException(CheckedFormatFactory.IDENTIFIER + ": the Avro schema must be a record, not "
                    + schema.getType());
        }
        return schema;
    }

    /** Decodes {@code message} into {@code out} (one slot per declared column). */
    void read(byte[] message, Object[] out) throws BadRecord {
        if (message == null) {
            throw new BadRecord(BadRecord.NULL_VALUE, "the record's value is null");
        }
        if (encoding == Encoding.AVRO) {
            readAvro(message, out);
        } else {
            readJson(message, out);
        }
    }

    private void readAvro(byte[] message, Object[] out) throws BadRecord {
        AvroInput in = input;
        in.reset(message);
        for (int i = 0; i < readers.length; i++) {
            Object value;
            try {
                value = readers[i].avro(in);
            } catch (BadRecord e) {
                throw e.in("field '" + names[i] + "' (" + readers[i].avroType() + ")");
            }
            if (slots[i] >= 0) {
                out[slots[i]] = value;
            }
        }
        if (in.remaining() > 0) {
            throw new BadRecord(BadRecord.TRAILING_BYTES, in.remaining() + " bytes left after the last field, at byte "
                    + in.position() + " of " + message.length);
        }
    }

    private void readJson(byte[] message, Object[] out) throws BadRecord {
        JsonNode root;
        try (JsonParser parser = json.createParser(message)) {
            root = json.readTree(parser);
            if (root != null && parser.nextToken() != null) {
                throw new BadRecord(BadRecord.BAD_JSON,
                        "content after the document at byte " + parser.currentTokenLocation().getByteOffset());
            }
        } catch (JsonProcessingException e) {
            throw new BadRecord(BadRecord.BAD_JSON, e.getOriginalMessage() + " at " + location(e));
        } catch (IOException e) {
            throw new BadRecord(BadRecord.BAD_JSON, String.valueOf(e.getMessage()));
        }
        if (root == null || root.isMissingNode()) {
            throw new BadRecord(BadRecord.BAD_JSON, "an empty document");
        }
        if (!root.isObject()) {
            throw new BadRecord(BadRecord.NOT_AN_OBJECT, "the document is " + root.getNodeType() + ", not an object");
        }
        for (int i = 0; i < readers.length; i++) {
            JsonNode node = root.get(names[i]);
            Object value;
            if (node == null || node.isNull()) {
                if (!readers[i].nullable()) {
                    throw node == null
                            ? new BadRecord(BadRecord.MISSING_FIELD, "field '" + names[i] + "' ("
                                    + readers[i].avroType() + ") is missing")
                            : new BadRecord(BadRecord.NULL_FIELD, "field '" + names[i] + "' ("
                                    + readers[i].avroType() + ") is null");
                }
                value = null;
            } else {
                try {
                    value = readers[i].json(node);
                } catch (BadRecord e) {
                    throw e.in("field '" + names[i] + "' (" + readers[i].avroType() + ")");
                }
            }
            if (slots[i] >= 0) {
                out[slots[i]] = value;
            }
        }
    }

    private static String location(JsonProcessingException e) {
        return e.getLocation() == null ? "?" : "byte " + e.getLocation().getByteOffset();
    }
}
