package featurestore.flink.checked;

import java.util.Locale;
import java.util.Set;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.factories.FactoryUtil;

/**
 * {@code 'format' = 'featurestore-checked'}: a source's events, Avro binary (schemaless, as
 * fastavro's {@code schemaless_writer} writes them) or JSON, decoded and checked against the
 * registry's Avro schema, where a bad record becomes a dead letter instead of failing the job.
 *
 * <pre>
 * 'value.format' = 'featurestore-checked',
 * 'value.featurestore-checked.encoding' = 'avro',            -- or 'json'
 * 'value.featurestore-checked.schema' = '{"type": "record", ...}'
 * </pre>
 *
 * See {@link CheckedDecodingFormat} for the metadata columns and {@link CheckedDeserializer} for
 * what a bad record becomes.
 */
public final class CheckedFormatFactory implements DeserializationFormatFactory {
    public static final String IDENTIFIER = "featurestore-checked";

    public static final ConfigOption<String> ENCODING = ConfigOptions.key("encoding").stringType().noDefaultValue()
            .withDescription("avro (binary, no framing) or json");
    public static final ConfigOption<String> SCHEMA = ConfigOptions.key("schema").stringType().noDefaultValue()
            .withDescription("the source's Avro record schema, as JSON");

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return Set.of(ENCODING, SCHEMA);
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        return Set.of();
    }

    @Override
    public DecodingFormat<DeserializationSchema<RowData>> createDecodingFormat(DynamicTableFactory.Context context,
            ReadableConfig formatOptions) {
        FactoryUtil.validateFactoryOptions(this, formatOptions);
        RecordReader.Encoding encoding;
        try {
            encoding = RecordReader.Encoding.valueOf(formatOptions.get(ENCODING).toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new ValidationException(IDENTIFIER + ": 'encoding' must be avro or json, not '"
                    + formatOptions.get(ENCODING) + "'");
        }
        String schema = formatOptions.get(SCHEMA);
        RecordReader.parse(schema);
        return new CheckedDecodingFormat(encoding, schema);
    }
}
