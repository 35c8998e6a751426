package featurestore.flink.checked;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.RowType;
import org.apache.flink.table.types.utils.DataTypeUtils;

/**
 * The decoding side of {@code 'format' = 'featurestore-checked'}: the declared columns from the
 * record, plus three readable metadata columns (in a Kafka table: {@code METADATA FROM
 * 'value.reason'} etc.):
 *
 * <ul>
 *   <li>{@code reason} STRING: NULL for a record that decodes, else a short code (see {@link BadRecord});
 *   <li>{@code detail} STRING: where and why, for people;
 *   <li>{@code bytes} BYTES: the value as it came.
 * </ul>
 */
final class CheckedDecodingFormat implements DecodingFormat<DeserializationSchema<RowData>> {
    static final String REASON = "reason";
    static final String DETAIL = "detail";
    static final String BYTES = "bytes";

    private final RecordReader.Encoding encoding;
    private final String schemaText;
    private List<String> metadataKeys = List.of();

    CheckedDecodingFormat(RecordReader.Encoding encoding, String schemaText) {
        this.encoding = encoding;
        this.schemaText = schemaText;
    }

    @Override
    public DeserializationSchema<RowData> createRuntimeDecoder(DynamicTableSource.Context context,
            DataType physicalDataType) {
        RowType columns = (RowType) physicalDataType.getLogicalType();
        new RecordReader(encoding, schemaText, columns); // fail at planning, not in the job, on a mismatch
        Map<String, DataType> readable = listReadableMetadata();
        List<DataTypes.Field> fields = new ArrayList<>();
        for (String key : metadataKeys) {
            fields.add(DataTypes.FIELD(key, readable.get(key)));
        }
        DataType produced = DataTypeUtils.appendRowFields(physicalDataType, fields);
        return new CheckedDeserializer(encoding, schemaText, columns, metadataKeys,
                context.createTypeInformation(produced));
    }

    @Override
    public Map<String, DataType> listReadableMetadata() {
        Map<String, DataType> out = new LinkedHashMap<>();
        out.put(REASON, DataTypes.STRING().nullable());
        out.put(DETAIL, DataTypes.STRING().nullable());
        out.put(BYTES, DataTypes.BYTES().nullable());
        return out;
    }

    @Override
    public void applyReadableMetadata(List<String> metadataKeys) {
        this.metadataKeys = List.copyOf(metadataKeys);
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return ChangelogMode.insertOnly();
    }
}
