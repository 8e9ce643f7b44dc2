//! Generates prost/tonic code from the .proto files with protox (pure Rust: no protoc needed).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/herald/config/v1/config.proto",
        "proto/herald/admin/v1/admin.proto",
        "proto/herald/cluster/v1/cluster.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
