#!/usr/bin/env node
// Rewrites src/onnx/onnx-schema.json (the ONNX reader's field tables, compiled from src/onnx/onnx.proto).
// Run after editing onnx.proto and `tsc -p .`; test/onnx/schema-compiled.test.ts checks the two agree.
import { writeFileSync } from 'node:fs';
import { compileTables, compiledSchemaPath } from '../dist/src/onnx/schema.js';

writeFileSync(compiledSchemaPath(), `${JSON.stringify(compileTables())}\n`);
process.stderr.write(`wrote ${compiledSchemaPath()}\n`);
