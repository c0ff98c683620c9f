import type { LazyField } from './decoder.js';

/** Shapes of the decoded ONNX messages (field names as in onnx.proto; absent = unset). */

export interface StringStringEntry { key?: string; value?: string }
export interface OperatorSetId { domain?: string; version?: number | bigint }

export interface TensorProto {
  dims?: Array<number | bigint>;
  data_type?: number;
  name?: string;
  doc_string?: string;
  data_location?: number;
  external_data?: StringStringEntry[];
  raw_data?: LazyField;
  float_data?: LazyField;
  int32_data?: LazyField;
  string_data?: LazyField;
  int64_data?: LazyField;
  double_data?: LazyField;
  uint64_data?: LazyField;
  metadata_props?: StringStringEntry[];
}

export interface SparseTensorProto { values?: TensorProto; indices?: TensorProto; dims?: Array<number | bigint> }

export interface Dimension { dim_value?: number | bigint; dim_param?: string; denotation?: string }
export interface TensorShape { dim?: Dimension[] }

export interface TypeProto {
  tensor_type?: { elem_type?: number; shape?: TensorShape };
  sequence_type?: { elem_type?: TypeProto };
  map_type?: { key_type?: number; value_type?: TypeProto };
  optional_type?: { elem_type?: TypeProto };
  sparse_tensor_type?: { elem_type?: number; shape?: TensorShape };
  opaque_type?: { domain?: string; name?: string };
  denotation?: string;
}

export interface ValueInfo { name?: string; type?: TypeProto; doc_string?: string }

export interface AttributeProto {
  name?: string;
  type?: number;
  f?: number;
  i?: number | bigint;
  s?: Buffer;
  t?: TensorProto;
  g?: GraphProto;
  sparse_tensor?: SparseTensorProto;
  floats?: number[];
  ints?: Array<number | bigint>;
  strings?: Buffer[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  sparse_tensors?: SparseTensorProto[];
}

export interface NodeProto {
  input?: string[];
  output?: string[];
  name?: string;
  op_type?: string;
  domain?: string;
  attribute?: AttributeProto[];
}

export interface GraphProto {
  node?: NodeProto[];
  name?: string;
  initializer?: TensorProto[];
  sparse_initializer?: SparseTensorProto[];
  doc_string?: string;
  input?: ValueInfo[];
  output?: ValueInfo[];
  value_info?: ValueInfo[];
}

export interface FunctionProto {
  name?: string;
  domain?: string;
  overload?: string;
  input?: string[];
  output?: string[];
  node?: NodeProto[];
  opset_import?: OperatorSetId[];
}

export interface ModelProto {
  ir_version?: number | bigint;
  opset_import?: OperatorSetId[];
  producer_name?: string;
  producer_version?: string;
  domain?: string;
  model_version?: number | bigint;
  doc_string?: string;
  graph?: GraphProto;
  metadata_props?: StringStringEntry[];
  functions?: FunctionProto[];
  training_info?: TrainingInfoProto[];
  $unknownFields?: number;
}

export interface TrainingInfoProto { initialization?: GraphProto; algorithm?: GraphProto }
