"""Writers and plans behind `dandifs.localarchive.demodata`."""
