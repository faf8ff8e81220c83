// The layout of the Karmem ABI's descriptor (contract/descriptor.km,
// docs/ABI.md §5), as `karmem_format::gen_ts::layout_json` writes it
// (`cargo run -p xtask -- host-kit DIR` writes it as
// `descriptor.layout.json`; `karmem-bridge gen ts contract/descriptor.km`
// embeds the same). Regenerate it when the descriptor gains fields; a
// guest's newer fields are skipped and older guests' missing ones read as
// zero values either way (dynamic structs, FORMAT.md §5.2).
import { Layout } from "./codec.js";

export const DESCRIPTOR_LAYOUT = new Layout({"types":[
{"k":"struct","name":"descriptor","dynamic":true,"tuple":false,"map_entry":false,"used":92,"body_size":96,"fields":[{"name":"package","ty":3,"offset":4,"default":null},{"name":"name","ty":3,"offset":16,"default":null},{"name":"pattern","ty":4,"offset":28,"default":null},{"name":"functions","ty":5,"offset":32,"default":null},{"name":"memories","ty":6,"offset":44,"default":null},{"name":"wit_package","ty":3,"offset":56,"default":null},{"name":"wit_interface","ty":3,"offset":68,"default":null},{"name":"wit_version","ty":3,"offset":80,"default":null}],"columns":[{"path":[0],"hash":1268118805,"offset":4,"size":12,"leaf":3},{"path":[1],"hash":4218009092,"offset":16,"size":12,"leaf":3},{"path":[2],"hash":3958272823,"offset":28,"size":1,"leaf":4},{"path":[3],"hash":2613195814,"offset":32,"size":12,"leaf":5},{"path":[4],"hash":182778065,"offset":44,"size":12,"leaf":6},{"path":[5],"hash":3132668352,"offset":56,"size":12,"leaf":3},{"path":[6],"hash":2872932083,"offset":68,"size":12,"leaf":3},{"path":[7],"hash":1527855074,"offset":80,"size":12,"leaf":3}],"size":4,"align":4},
{"k":"struct","name":"function_descriptor","dynamic":true,"tuple":false,"map_entry":false,"used":32,"body_size":32,"fields":[{"name":"name","ty":3,"offset":4,"default":null},{"name":"id","ty":7,"offset":16,"default":null},{"name":"type_hash","ty":8,"offset":24,"default":null}],"columns":[{"path":[0],"hash":1268118805,"offset":4,"size":12,"leaf":3},{"path":[1],"hash":4218009092,"offset":16,"size":4,"leaf":7},{"path":[2],"hash":3958272823,"offset":24,"size":8,"leaf":8}],"size":4,"align":4},
{"k":"struct","name":"memory_descriptor","dynamic":true,"tuple":false,"map_entry":false,"used":28,"body_size":32,"fields":[{"name":"name","ty":3,"offset":4,"default":null},{"name":"access","ty":4,"offset":16,"default":null},{"name":"offset","ty":7,"offset":20,"default":null},{"name":"pages","ty":7,"offset":24,"default":null}],"columns":[{"path":[0],"hash":1268118805,"offset":4,"size":12,"leaf":3},{"path":[1],"hash":4218009092,"offset":16,"size":1,"leaf":4},{"path":[2],"hash":3958272823,"offset":20,"size":4,"leaf":7},{"path":[3],"hash":2613195814,"offset":24,"size":4,"leaf":7}],"size":4,"align":4},
{"k":"string","utf16":false,"size":12,"align":4},
{"k":"prim","p":"u8","size":1,"align":1},
{"k":"array","elem":1,"form":"soa","map":false,"size":12,"align":4},
{"k":"array","elem":2,"form":"soa","map":false,"size":12,"align":4},
{"k":"prim","p":"u32","size":4,"align":4},
{"k":"prim","p":"u64","size":8,"align":8}
],
"named":{"descriptor":0,"function_descriptor":1,"memory_descriptor":2},
"functions":{}});
