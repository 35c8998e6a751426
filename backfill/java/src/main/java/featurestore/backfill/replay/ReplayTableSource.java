package featurestore.backfill.replay;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.DataStreamSource;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.ProviderContext;
import org.apache.flink.table.connector.source.DataStreamScanProvider;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.connector.source.ScanTableSource;
import org.apache.flink.table.connector.source.abilities.SupportsReadingMetadata;
import org.apache.flink.table.connector.source.abilities.SupportsWatermarkPushDown;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.RowType;

/**
 * The planner's view of the replay: insert-only, bounded, with metadata columns and the DDL's
 * watermark pushed into the source so that it is generated per split (per partition).
 */
final class ReplayTableSource implements ScanTableSource, SupportsReadingMetadata, SupportsWatermarkPushDown {
    private final ReplayOptions opts;
    private final String table;
    private List<String> metadataKeys = List.of();
    private DataType producedType;
    private WatermarkStrategy<RowData> watermarkStrategy;

    ReplayTableSource(ReplayOptions opts, String table) {
        this.opts = opts;
        this.table = table;
    }

    @Override
    public ChangelogMode getChangelogMode() {
        return ChangelogMode.insertOnly();
    }

    @Override
    public ScanRuntimeProvider getScanRuntimeProvider(ScanContext context) {
        List<String> names = new ArrayList<>(opts.fieldNames);
        List<LogicalType> types = new ArrayList<>(opts.fieldTypes);
        if (producedType != null) {
            RowType row = (RowType) producedType.getLogicalType();
            names = row.getFieldNames().subList(0, opts.fieldNames.size());
        }
        ReplaySource source = new ReplaySource(opts.withProduced(names, types, metadataKeys));
        DataType produced = producedType != null ? producedType : physicalType();
        TypeInformation<RowData> typeInfo = context.createTypeInformation(produced);
        WatermarkStrategy<RowData> strategy = watermarkStrategy != null ? watermarkStrategy
                : WatermarkStrategy.noWatermarks();
        String name = "hdfs-replay: " + table;
        return new DataStreamScanProvider() {
            @Override
            public DataStream<RowData> produceDataStream(ProviderContext provider, StreamExecutionEnvironment env) {
                DataStreamSource<RowData> stream = env.fromSource(source, strategy, name, typeInfo);
                provider.generateUid("hdfs-replay").ifPresent(stream::uid);
                return stream;
            }

            @Override
            public boolean isBounded() {
                return true;
            }
        };
    }

    private DataType physicalType() {
        List<DataTypes.Field> fields = new ArrayList<>();
        for (int i = 0; i < opts.fieldNames.size(); i++) {
            fields.add(DataTypes.FIELD(opts.fieldNames.get(i), DataTypes.of(opts.fieldTypes.get(i))));
        }
        return DataTypes.ROW(fields.toArray(new DataTypes.Field[0]));
    }

    @Override
    public Map<String, DataType> listReadableMetadata() {
        Map<String, DataType> out = new LinkedHashMap<>();
        out.put(RowDecoder.META_PARTITION, DataTypes.INT().notNull());
        out.put(RowDecoder.META_POSITION, DataTypes.BIGINT().notNull());
        out.put(RowDecoder.META_FILE_INDEX, DataTypes.INT().notNull());
        out.put(RowDecoder.META_ROW, DataTypes.BIGINT().notNull());
        out.put(RowDecoder.META_FILE_PATH, DataTypes.STRING().notNull());
        return out;
    }

    @Override
    public void applyReadableMetadata(List<String> keys, DataType producedDataType) {
        this.metadataKeys = List.copyOf(keys);
        this.producedType = producedDataType;
    }

    @Override
    public void applyWatermark(WatermarkStrategy<RowData> strategy) {
        this.watermarkStrategy = strategy;
    }

    @Override
    public DynamicTableSource copy() {
        ReplayTableSource copy = new ReplayTableSource(opts, table);
        copy.metadataKeys = metadataKeys;
        copy.producedType = producedType;
        copy.watermarkStrategy = watermarkStrategy;
        return copy;
    }

    @Override
    public String asSummaryString() {
        return "hdfs-replay";
    }
}
